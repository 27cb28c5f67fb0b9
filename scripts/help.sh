# Every script answers --help (its header comment) and --version, and does nothing else
# then. Sourced first, before anything runs.
case ${1:-} in
    -h|--help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0"; exit 0 ;;
    -V|--version)
        version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "${BASH_SOURCE[0]%/*}/../Cargo.toml" "${BASH_SOURCE[0]%/*}/VERSION" 2>/dev/null | head -n 1)
        echo "${0##*/} (uvdeploy) ${version:-unknown}"; exit 0 ;;
esac
