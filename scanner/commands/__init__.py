"""One module per subcommand: ``add_arguments(parser)`` and ``run(args) -> exit code``.

The commands are the top of the house: they turn the parsed arguments into options, pick the hosts,
run the engine and hand the reports to the output. Nothing below them sees the command line.

May import: scanner.base, scanner.collector, scanner.host, scanner.facts, scanner.engine.model, scanner.policy, scanner.remediation, scanner.engine, scanner.output, scanner.fleet, scanner.drift, scanner.vm_config.
"""
