# Every script answers --help and --version, and does nothing else then. Sourced first,
# before anything runs. --help prints the script's header comment (what it does, its usage),
# nothing after it, with the usage line naming the script as it was called: `scripts/deploy`,
# an installed path, or `uvdeploy deploy` (which `uvdeploy` says in UVDEPLOY_AS).
invoked_as=${UVDEPLOY_AS:-$0}
unset UVDEPLOY_AS
case ${1:-} in
    -h|--help)
        {
            IFS= read -r line # `#!/usr/bin/env bash`
            while IFS= read -r line && [[ $line == '#'* ]]; do
                line=${line#\#}
                line=${line# }
                if [[ $line == "usage: scripts/${0##*/}"* ]]; then
                    line="usage: $invoked_as${line#"usage: scripts/${0##*/}"}"
                fi
                printf '%s\n' "$line"
            done
        } < "$0"
        exit 0 ;;
    -V|--version)
        version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "${BASH_SOURCE[0]%/*}/../Cargo.toml" "${BASH_SOURCE[0]%/*}/VERSION" 2>/dev/null | head -n 1)
        echo "${0##*/} (uvdeploy) ${version:-unknown}"; exit 0 ;;
esac
