"""Bash that asks, at the moment a remediation script runs, whether the host itself needs a PCI function.

Why: the script is written from a scan, and run later, maybe on a host whose network or disks
have moved since. Unbinding the NIC that carries the default route, the disk that holds ``/``,
``/boot`` or swap, or the PF of a VF that does (unbinding the PF or writing 0 to its
``sriov_numvfs`` removes its VFs), cuts the host off or crashes it. So besides the refusal
written at generation time, every block that would take a device away asks again first.

Interface (:data:`HOST_GUARD`; the script must also define ``inroot`` from
:mod:`scanner.remediation.script_paths`, ``say() { printf '%s\\n' "$*"; }``, ``ROOT`` -- empty on the live
machine -- and ``STATE``, a writable scratch directory):

``critical_reason ADDR``
    Prints one line saying why the host needs the PCI function ADDR (``0000:3b:00.0``) right now
    and returns 0; returns 1, printing nothing, when it does not (or ADDR is no PCI address).
    When it cannot tell (``$STATE`` is not writable) it says so and returns 0: a guard that
    cannot look refuses.

The whole set is worked out once per run, on the first call, and kept in ``$STATE/host-critical``
(one ``ADDR reason`` line each, then the marker ``$STATE/host-critical.done``): the script runs
each fix block in a subshell, where a shell variable would not outlive the block.

What it reads, always through ``inroot`` (a tree's absolute links stay in the tree) and exactly
as :mod:`scanner.facts.host_dependencies` does, so that the scan and the script name the same
set of functions for any tree:

* ``/proc/net/route`` (destination ``00000000``) and ``/proc/net/ipv6_route`` (``::/0``, up, not
  a reject route, not on ``lo``): the interfaces of default routes; each is followed down its
  ``/sys/class/net/IFACE/lower_*`` links (bridge, bond, VLAN), breadth first, 6 links deep, to
  the interfaces whose ``device`` link resolves under a PCI function.
* ``/proc/self/mountinfo``: every mounted filesystem, once each (by its first mount), by its
  ``/sys/dev/block/MAJ:MIN``, else (btrfs shows an anonymous ``0:NN``) by its mount source
  ``/dev/NAME`` or ``/dev/mapper/NAME`` (``/sys/class/block/dm-*/dm/name``).
* ``/proc/swaps``: a swap partition by its block device, a swap file by the mount holding it
  (the longest mount point that contains it).
* A block device is followed, breadth first, 8 layers deep, through ``slaves/*`` (device-mapper,
  MD), ``multipath/*`` and ``device/nvmeN`` (an NVMe multipath head's controllers) and from a
  partition to its disk, until its resolved path lies under a PCI function.
* ``/sys/bus/pci/devices/ADDR/physfn`` of every function found: a VF makes its PF needed too.

Everything read from the host is hostile: names are only ever quoted words (never evaluated),
a name with ``/`` or that is ``.`` or ``..`` is refused, every address is checked against the
PCI address pattern before it is printed, and reasons are printed with non-printable characters
as ``?``. Only bash 4 builtins run (and ``readlink``, inside ``inroot``): one fork per symlink,
none per line read. Glob options must be bash's defaults (no ``failglob``).
"""

#: ``critical_reason ADDR``: see the module docstring.
HOST_GUARD = r'''
# critical_reason ADDR: why the host needs PCI function ADDR right now (one line, status 0), or
# status 1 when it does not; the set is worked out once per run and kept in $STATE
GUARD_ADDRESS='^[0123456789abcdef]{4,8}:[0123456789abcdef]{2}:[01][0123456789abcdef][.][01234567]$'
critical_reason() {
    local address why
    [[ ${1-} =~ $GUARD_ADDRESS ]] || return 1
    if [ ! -e "$STATE/host-critical.done" ] && ! guard_compute; then
        say "cannot tell whether the host needs $1: $STATE/host-critical cannot be written"
        return 0
    fi
    while read -r address why; do
        if [ "$address" = "$1" ]; then
            say "$why"
            return 0
        fi
    done < "$STATE/host-critical"
    return 1
}

# guard_compute: writes $STATE/host-critical, one "ADDR reason" line per function the host needs
guard_compute() {
    local LC_ALL=C GUARD_PATH='' GUARD_FOUND='' address vf pf
    local -a GUARD_WALKED=() GUARD_DM=() GUARD_M_DEVICE=() GUARD_M_POINT=() GUARD_M_SOURCE=()
    local -A GUARD_REASONS=() GUARD_USES=() GUARD_PF=()
    : > "$STATE/host-critical" 2>/dev/null || return 1
    guard_routes
    guard_read_mounts
    guard_mounts
    guard_swaps
    for vf in ${GUARD_USES[@]+"${!GUARD_USES[@]}"}; do
        guard_physfn "$vf" || continue
        pf=$GUARD_FOUND
        guard_uses_as "its VF $vf" "${GUARD_USES[$vf]}"
        GUARD_PF[$pf]="${GUARD_PF[$pf]-}${GUARD_FOUND}"
    done
    for pf in ${GUARD_PF[@]+"${!GUARD_PF[@]}"}; do
        GUARD_REASONS[$pf]="${GUARD_REASONS[$pf]-}${GUARD_PF[$pf]}"
    done
    {
        for address in ${GUARD_REASONS[@]+"${!GUARD_REASONS[@]}"}; do
            why=${GUARD_REASONS[$address]#; }
            printf '%s %s\n' "$address" "${why//[^[:print:]]/?}"
        done
    } > "$STATE/host-critical" || return 1
    : > "$STATE/host-critical.done"
}

# guard_note ADDR USE: the host needs ADDR because it USE ("carries the host's default route (eno1)")
guard_note() {
    local use=${2//[^[:print:]]/?}
    GUARD_REASONS[$1]="${GUARD_REASONS[$1]-}; it $use"
    GUARD_USES[$1]="${GUARD_USES[$1]-}$use"$'\n'
}

# guard_uses_as SUBJECT USES: GUARD_FOUND = "; SUBJECT use" for each line of USES
guard_uses_as() {
    local rest=$2 use
    GUARD_FOUND=''
    while [ -n "$rest" ]; do
        use=${rest%%$'\n'*}
        rest=${rest#*$'\n'}
        GUARD_FOUND="$GUARD_FOUND; $1 $use"
    done
}

# guard_plain NAME: a plain directory entry name (not empty, no '/', not '.' or '..')
guard_plain() {
    case $1 in '' | . | .. | */*) return 1 ;; esac
}

# guard_resolve HOSTPATH: GUARD_PATH = HOSTPATH with every link resolved by inroot, as a host
# path; status 1 (GUARD_PATH empty) when it does not exist. inroot's answer comes back through a
# file, not $(...), which would fork.
guard_resolve() {
    GUARD_PATH=''
    inroot "$1" > "$STATE/guard.path" 2>/dev/null || return 1
    IFS= read -r -d '' GUARD_PATH < "$STATE/guard.path" || true
    GUARD_PATH=${GUARD_PATH%$'\n'}
    if [ -z "$GUARD_PATH" ] || [ ! -e "$GUARD_PATH" ]; then
        GUARD_PATH=''
        return 1
    fi
    GUARD_PATH=${GUARD_PATH#"$ROOT"}
    GUARD_PATH=${GUARD_PATH:-/}
}

# guard_file HOSTPATH: GUARD_PATH = the host path of a readable regular file
guard_file() {
    guard_resolve "$1" && [ -f "$ROOT$GUARD_PATH" ] && [ -r "$ROOT$GUARD_PATH" ]
}

# guard_address_in PATH: GUARD_FOUND = the last PCI address among PATH's components
guard_address_in() {
    local rest=$1 part
    GUARD_FOUND=''
    while [ -n "$rest" ]; do
        part=${rest%%/*}
        if [ "$part" = "$rest" ]; then rest=''; else rest=${rest#*/}; fi
        if [[ $part =~ $GUARD_ADDRESS ]]; then GUARD_FOUND=$part; fi
    done
    [ -n "$GUARD_FOUND" ]
}

# guard_physfn ADDR: GUARD_FOUND = the PF of a VF (its physfn link), status 1 when ADDR is no VF
guard_physfn() {
    GUARD_FOUND=''
    guard_resolve "/sys/bus/pci/devices/$1" || return 1
    [ -L "$ROOT$GUARD_PATH/physfn" ] || return 1
    guard_resolve "/sys/bus/pci/devices/$1/physfn" || return 1
    GUARD_FOUND=${GUARD_PATH##*/}
    [[ $GUARD_FOUND =~ $GUARD_ADDRESS ]] || { GUARD_FOUND=''; return 1; }
}

# guard_routes: the default routes' interfaces, each followed to its NICs
guard_routes() {
    local file first=1 flags iface
    local -a f
    local -A walked=()
    if guard_file /proc/net/route; then
        file=$ROOT$GUARD_PATH
        while read -r -a f || [ "${#f[@]}" -gt 0 ]; do
            if [ "$first" = 1 ]; then first=0; continue; fi  # the header line
            if [ "${#f[@]}" -ge 2 ] && [ "${f[1]}" = 00000000 ]; then walked["_${f[0]}"]=1; fi
        done < "$file"
    fi
    if guard_file /proc/net/ipv6_route; then
        file=$ROOT$GUARD_PATH
        while read -r -a f || [ "${#f[@]}" -gt 0 ]; do
            if [ "${#f[@]}" -lt 10 ] || [ "${f[0]}" != 00000000000000000000000000000000 ] || [ "${f[1]}" != 00 ] \
                || [ "${f[9]}" = lo ] || [[ ! ${f[8]} =~ ^[0123456789abcdefABCDEF]+$ ]]; then
                continue
            fi
            flags=000${f[8]}
            flags=$((16#${flags: -3}))  # RTF_UP (0x1) and RTF_REJECT (0x200) are in the last three digits
            if (( (flags & 0x1) && !(flags & 0x200) )); then walked["_${f[9]}"]=1; fi
        done < "$file"
    fi
    for iface in ${walked[@]+"${!walked[@]}"}; do
        guard_net_walk "${iface#_}"
    done
}

# guard_breadth_first DEPTH STEP NODE: walks from NODE, each node once, at most DEPTH steps deep.
# "STEP node 1|0" notes what the node leads to and returns 0, or returns 1 and, when its second
# word is 1, sets children to the nodes below it.
guard_breadth_first() {
    local depth node child
    local -a level=("$3") below children
    local -A seen=(["_$3"]=1)
    for ((depth = 0; depth <= $1; depth++)); do
        below=()
        for node in ${level[@]+"${level[@]}"}; do
            children=()
            if "$2" "$node" "$((depth < $1))"; then continue; fi
            for child in ${children[@]+"${children[@]}"}; do
                [ -z "${seen["_$child"]+set}" ] || continue
                seen["_$child"]=1
                below+=("$child")
            done
        done
        level=(${below[@]+"${below[@]}"})
    done
}

# guard_net_walk IFACE: notes the NICs under a route's interface, down its lower_* links
guard_net_walk() {
    local top=$1
    guard_breadth_first 6 guard_net_step "$1"
}

# guard_net_step IFACE 1|0: notes the NIC IFACE, else children = the interfaces below it
guard_net_step() {
    local entry child under=''
    guard_plain "$1" || return 1
    if guard_resolve "/sys/class/net/$1/device" && guard_address_in "$GUARD_PATH"; then
        if [ "$1" != "$top" ]; then under=" under $top"; fi
        guard_note "$GUARD_FOUND" "carries the host's default route ($1$under)"
        return 0
    fi
    if [ "$2" = 0 ] || ! guard_resolve "/sys/class/net/$1"; then return 1; fi
    for entry in "$ROOT$GUARD_PATH"/lower_*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        child=${entry##*/}
        children+=("${child#lower_}")
    done
    return 1
}

# guard_block_walk HOSTPATH: adds the PCI functions under a block device to GUARD_WALKED
guard_block_walk() {
    if guard_resolve "$1"; then guard_breadth_first 8 guard_block_step "$GUARD_PATH"; fi
}

# guard_block_step NODE 1|0: adds the PCI function of a resolved block device to GUARD_WALKED,
# else children = what it sits on (resolved)
guard_block_step() {
    local sub entry name below
    local -a paths=()
    if guard_address_in "$1"; then
        GUARD_WALKED+=("$GUARD_FOUND")
        return 0
    fi
    [ "$2" = 1 ] || return 1
    for sub in slaves multipath; do
        guard_resolve "$1/$sub" || continue
        for entry in "$ROOT$GUARD_PATH"/* "$ROOT$GUARD_PATH"/.*; do
            name=${entry##*/}
            if guard_plain "$name" && { [ -e "$entry" ] || [ -L "$entry" ]; }; then paths+=("$1/$sub/$name"); fi
        done
    done
    if guard_resolve "$1/device"; then
        for entry in "$ROOT$GUARD_PATH"/nvme*; do
            name=${entry##*/}
            if [[ $name =~ ^nvme[0123456789]+$ ]]; then paths+=("$1/device/$name"); fi
        done
    fi
    if guard_resolve "$1/partition"; then paths+=("$1/.."); fi
    for below in ${paths[@]+"${paths[@]}"}; do
        if guard_resolve "$below"; then children+=("$GUARD_PATH"); fi
    done
    return 1
}

# guard_source_walk SOURCE: adds the PCI functions under /dev/NAME or /dev/mapper/NAME to GUARD_WALKED
guard_source_walk() {
    local name block
    local -a names
    case $1 in /dev/*) ;; *) return 0 ;; esac
    name=${1##*/}
    names=("$name")
    if [[ $1 == /dev/mapper/* ]]; then
        guard_dm_by_name "$name"
        if [ "${#GUARD_DM[@]}" -gt 0 ]; then names=("${GUARD_DM[@]}"); fi
    fi
    for block in "${names[@]}"; do
        if guard_plain "$block"; then guard_block_walk "/sys/class/block/$block"; fi
    done
}

# guard_dm_by_name NAME: GUARD_DM = every dm-N whose device-mapper name is NAME
guard_dm_by_name() {
    local entry base line
    GUARD_DM=()
    guard_resolve /sys/class/block || return 0
    for entry in "$ROOT$GUARD_PATH"/dm-*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        base=${entry##*/}
        line=''
        if guard_file "/sys/class/block/$base/dm/name"; then read -r line < "$ROOT$GUARD_PATH" || true; fi
        if [ "$line" = "$1" ]; then GUARD_DM+=("$base"); fi
    done
}

# guard_read_mounts: GUARD_M_DEVICE/POINT/SOURCE from /proc/self/mountinfo (escaped as there)
guard_read_mounts() {
    local file i after
    local -a f
    guard_file /proc/self/mountinfo || return 0
    file=$ROOT$GUARD_PATH
    while read -r -a f || [ "${#f[@]}" -gt 0 ]; do
        [ "${#f[@]}" -gt 4 ] || continue
        after=${#f[@]}
        for ((i = 6; i < ${#f[@]}; i++)); do
            if [ "${f[i]}" = - ]; then after=$((i + 2)); break; fi
        done
        GUARD_M_DEVICE+=("${f[2]}")
        GUARD_M_POINT+=("${f[4]}")
        if [ "$after" -lt "${#f[@]}" ]; then GUARD_M_SOURCE+=("${f[after]}"); else GUARD_M_SOURCE+=(''); fi
    done < "$file"
}

# guard_mount_walk INDEX USE: notes the PCI functions under mount INDEX (its MAJ:MIN, else its source)
guard_mount_walk() {
    local device=${GUARD_M_DEVICE[$1]} source=${GUARD_M_SOURCE[$1]} address on
    GUARD_WALKED=()
    if [[ $device =~ ^[0123456789]+:[0123456789]+$ ]]; then guard_block_walk "/sys/dev/block/$device"; fi
    if [ "${#GUARD_WALKED[@]}" -eq 0 ]; then guard_source_walk "$source"; fi
    on="on $device"
    if [[ $source == /dev/* ]]; then on="$on $source"; fi
    for address in ${GUARD_WALKED[@]+"${GUARD_WALKED[@]}"}; do
        guard_note "$address" "holds the host's $2 ($on)"
    done
}

# guard_mounts: every mounted filesystem, each once (a bind mount, same device and source, adds nothing)
guard_mounts() {
    local i key
    local -A walked=()
    for ((i = 0; i < ${#GUARD_M_POINT[@]}; i++)); do
        key="${GUARD_M_DEVICE[i]} ${GUARD_M_SOURCE[i]}"
        if [ -n "${walked[$key]+set}" ]; then continue; fi
        walked[$key]=1
        guard_mount_walk "$i" "${GUARD_M_POINT[i]} filesystem"
    done
}

# guard_in_mount PATH POINT: is PATH on the filesystem mounted at POINT (both escaped as the kernel does)?
guard_in_mount() {
    [ "$2" = / ] || [ "$1" = "$2" ] || [[ $1 == "$2"/* ]]
}

# guard_swaps: swap partitions by their block device, swap files by the mount holding them
guard_swaps() {
    local file first=1 i longest address
    local -a f
    guard_file /proc/swaps || return 0
    file=$ROOT$GUARD_PATH
    while read -r -a f || [ "${#f[@]}" -gt 0 ]; do
        if [ "$first" = 1 ]; then first=0; continue; fi  # the header line
        [ "${#f[@]}" -ge 2 ] || continue
        if [ "${f[1]}" = partition ]; then
            GUARD_WALKED=()
            guard_source_walk "${f[0]}"
            for address in ${GUARD_WALKED[@]+"${GUARD_WALKED[@]}"}; do
                guard_note "$address" "holds the host's swap (${f[0]})"
            done
        elif [ "${f[1]}" = file ]; then
            longest=-1
            for ((i = 0; i < ${#GUARD_M_POINT[@]}; i++)); do
                if guard_in_mount "${f[0]}" "${GUARD_M_POINT[i]}" && [ "${#GUARD_M_POINT[i]}" -gt "$longest" ]; then
                    longest=${#GUARD_M_POINT[i]}
                fi
            done
            for ((i = 0; i < ${#GUARD_M_POINT[@]}; i++)); do
                if guard_in_mount "${f[0]}" "${GUARD_M_POINT[i]}" && [ "${#GUARD_M_POINT[i]}" -eq "$longest" ]; then
                    guard_mount_walk "$i" "swap file ${f[0]}"
                fi
            done
        fi
    done < "$file"
}
'''

__all__ = ["HOST_GUARD"]
