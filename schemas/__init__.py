"""JSON Schemas of vfio-scan's documents (report, fleet), shipped in the wheel and used at run time."""
