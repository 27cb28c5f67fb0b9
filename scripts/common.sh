# Shared by scripts/deploy, scripts/plan and scripts/image: where the tools are (all three),
# and the options plan and image take (deploy hands its own to uvsupervise). Sourced, not run.

# The tools: $UVDEPLOY_BIN, else this checkout's release build, else its debug build.
# (Parameter expansions rather than `$(dirname ...)`: each fork costs milliseconds.)
root=$here/..
source "$here/tools.sh" || exit 2
if [[ -z ${UVDEPLOY_BIN:-} ]]; then
    if [[ -x $root/target/release/detect ]]; then UVDEPLOY_BIN=$root/target/release
    else UVDEPLOY_BIN=$root/target/debug; fi
fi
# Exits 2, saying how to build them, unless the TOOLs (every tool by default) are there.
require_tools() { # [TOOL...]
    (($#)) || set -- "${tools[@]}"
    local tool
    for tool; do
        if [[ ! -x $UVDEPLOY_BIN/$tool ]]; then
            echo "error: \`$UVDEPLOY_BIN/$tool\` is missing" >&2
            echo >&2
            echo "hint: build the tools first: \`cargo build --release\`" >&2
            exit 2
        fi
    done
}

env_args=() detect_args=() state_dir="" timeout=60s app_dir="" keep_state="" working_tree=""

usage_error() {
    echo "error: $1" >&2
    echo "usage: ${0##*/} [--env-file FILE]... [--env KEY=VALUE]... [--public-port N] [--app-port N] [--addon KIND]... [--state-dir DIR] [--working-tree] [APP_DIR]" >&2
    exit 2
}

parse_options() {
    while (($#)); do
        case $1 in
            --env-file|--env) (($# >= 2)) || usage_error "$1 needs a value"; env_args+=("$1" "$2"); shift 2 ;;
            # detect's own: the ports it lays the chain out on, the add-ons it records.
            --public-port|--app-port|--addon) (($# >= 2)) || usage_error "$1 needs a value"; detect_args+=("$1" "$2"); shift 2 ;;
            --state-dir) (($# >= 2)) || usage_error "$1 needs a value"; state_dir=$2; shift 2 ;;
            --keep-state) keep_state=1; shift ;;
            --working-tree) working_tree=1; shift ;;
            --timeout) (($# >= 2)) || usage_error "$1 needs a value"; timeout=$2; shift 2 ;;
            -h|--help|-V|--version) source "$here/help.sh" "$1" ;;
            -*) usage_error "unknown option \`$1\`" ;;
            *) [[ -z $app_dir ]] || usage_error "one APP_DIR only (got \`$app_dir\` and \`$1\`)"; app_dir=$1; shift ;;
        esac
    done
    # Like every tool, the current directory by default.
    [[ -n $app_dir ]] || app_dir=.
}

# The application's name, in $name: APP_DIR's last component (the current directory's for `.`).
app_name() {
    name=${app_dir%/}
    if [[ $name == . || -z $name ]]; then name=$PWD; fi
    name=${name##*/}
    # (`if`, not `&&`: a function must not end on a failed test, or `set -e` callers exit.)
    if [[ $name == .. || -z $name ]]; then name=app; fi
}

# The state directory: rendered files, varnishd's working directory, the plan. Outside the
# app (flowctl checks), and readable by the varnish user, which drops privileges. Unless
# --state-dir names one, a new private directory: its name cannot be guessed, so no other
# user can prepare it. `made_state_dir` says whether this deployment made it.
made_state_dir=""
prepare_state_dir() {
    if [[ -z $state_dir ]]; then
        app_name
        state_dir=$(mktemp -d "${TMPDIR:-/tmp}/uvdeploy-$name.XXXXXX") || exit 2
        made_state_dir=1
    else
        mkdir -p "$state_dir" || exit 2
    fi
    chmod 755 "$state_dir" || exit 2
    [[ $state_dir == /* ]] || state_dir=$PWD/$state_dir
}

# What is deployed: `checkout` copies APP_DIR's commit (or, with --working-tree, its files
# as they are) into $state_dir/copy and says so; detect then reads the copy. A copy this
# script made before (source.json beside it says so) is replaced; anything else is refused.
# The arguments, if any, run checkout (a runner: a command that takes checkout's argv).
check_out() { # [RUNNER...]
    local args=(--into "$state_dir/copy")
    [[ -n $working_tree ]] && args+=(--working-tree)
    [[ -f $state_dir/source.json ]] && rm -rf -- "$state_dir/copy"
    "$@" "$UVDEPLOY_BIN/checkout" "${args[@]}" "$app_dir" > "$state_dir/source.json"
}

say() { echo "==> $*" >&2; }
