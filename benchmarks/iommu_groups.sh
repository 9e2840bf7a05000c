#!/usr/bin/env bash
# The IOMMU group listing that passthrough guides print, one `lspci -nns` per device:
#   for d in /sys/kernel/iommu_groups/*/devices/*; do n=${d#*/iommu_groups/*}; n=${n%%/*};
#     printf 'IOMMU Group %s ' "$n"; lspci -nns "${d##*/}"; done
# The same loop with the sysfs root as its argument (default /sys), so that it runs on a benchmark
# tree too: lspci reads the tree through its sysfs access method.
set -u
sysfs=${1:-/sys}
for d in "$sysfs"/kernel/iommu_groups/*/devices/*; do
    [ -e "$d" ] || continue
    n=${d#*/iommu_groups/*}; n=${n%%/*}
    printf 'IOMMU Group %s ' "$n"
    lspci -A linux-sysfs -O sysfs.path="$sysfs/bus/pci" -nns "${d##*/}"
done
