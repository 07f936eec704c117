# Shared by the check scripts: `. scripts/_lib.sh NAME` gives log/die/run
# that prefix their lines with [NAME] and the seconds since the script began.
LIB_NAME="$1"
START=$(date +%s)
log() { printf '[%s] [%3ss] %s\n' "$LIB_NAME" "$(($(date +%s) - START))" "$*"; }
die() {
    printf '[%s] FAIL: %s\n' "$LIB_NAME" "$*" >&2
    exit 1
}
run() {
    printf '[%s] + %s\n' "$LIB_NAME" "$*"
    "$@"
}
