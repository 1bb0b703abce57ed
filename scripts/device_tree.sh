#!/usr/bin/env bash
# A device call sends the checkout's tracked files, its untracked files that git does not ignore and the carried
# paths: 64 MiB at most. The tracked tree is ~168 MiB (results/ 122, data/ 44), so a call is made from a slimmed
# index that is put back right after it:
#   bash scripts/device_tree.sh size [CARRY...]   what travels now and what would after slim, in MiB
#   bash scripts/device_tree.sh slim [CARRY...]   untrack results/ and data/ (git rm --cached) and ignore them in
#                                                 .git/info/exclude; refused if the index has staged changes there;
#                                                 prints the size that travels
#   bash scripts/device_tree.sh restore           their index entries back from HEAD, the exclude lines out: git
#                                                 status is then what it was before slim
#   bash scripts/device_tree.sh copy DEST [CARRY...]  copy what would travel after slim into DEST (CPU rehearsals)
# Between slim and restore, `git status` shows results/ and data/ as deleted: commit nothing then (the commit
# would delete them) and restore even when the call failed. The files themselves are never touched.
# Env: SLIM_PATHS ("results data"): the top-level folders slim untracks (a device command must need none of them).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
paths=(${SLIM_PATHS:-results data})
exclude=$(git rev-parse --git-path info/exclude)
state=$(git rev-parse --git-path device-slim.head)
begin="# >>> scripts/device_tree.sh slim (restore removes this block)"
end="# <<< scripts/device_tree.sh slim"
limit=$((64 << 20))

mib() { awk -v b="$1" 'BEGIN {printf "%.2f MiB", b / 1048576}'; }
sum_sizes() { { xargs -0 -r stat -c %s -- 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}'; }
not_slim=()
for p in "${paths[@]}"; do not_slim+=(":(exclude)$p"); done

# tracked + untracked-not-ignored (as they are, or as slim would leave them) + carried, in bytes
travel() {
    local tracked untracked carried=0 c
    if [ "$1" = slim ]; then
        tracked=$(git ls-files -z -- . "${not_slim[@]}" | sum_sizes)
        untracked=$(git ls-files -z -o --exclude-standard -- . "${not_slim[@]}" | sum_sizes)
    else
        tracked=$(git ls-files -z | sum_sizes)
        untracked=$(git ls-files -z -o --exclude-standard | sum_sizes)
    fi
    shift
    for c in "$@"; do
        [ -e "$c" ] || { echo "error: carried path $c does not exist" >&2; exit 1; }
        carried=$((carried + $(find "$c" -type f -print0 | sum_sizes)))
    done
    echo "$tracked $untracked $carried"
}

report() {  # report LABEL now|slim CARRY...
    local label=$1 t u c total
    shift
    read -r t u c < <(travel "$@")
    total=$((t + u + c))
    printf '%-12s tracked %s + untracked %s + carried %s = %s of 64 MiB%s\n' "$label:" "$(mib "$t")" "$(mib "$u")" \
        "$(mib "$c")" "$(mib $total)" "$([ $total -le $limit ] && echo "" || echo "  OVER THE LIMIT")"
    [ $total -le $limit ]
}

case ${1:-} in
    size)
        shift
        report now now "$@" || true
        if [ -f "$state" ]; then echo "(slimmed now)"; else report "after slim" slim "$@" || exit 1; fi
        ;;
    slim)
        shift
        [ ! -f "$state" ] || { echo "error: already slimmed ($state); run restore first" >&2; exit 1; }
        if ! git diff --cached --quiet HEAD -- "${paths[@]}"; then
            echo "error: the index has staged changes under ${paths[*]}: commit or unstage them first" >&2
            exit 1
        fi
        git rev-parse HEAD >"$state"
        { echo "$begin"; for p in "${paths[@]}"; do echo "/$p/"; done; echo "$end"; } >>"$exclude"
        git rm -r -q --cached --ignore-unmatch -- "${paths[@]}"
        echo "slimmed: ${paths[*]} untracked and ignored until \`scripts/device_tree.sh restore\` (commit nothing now)"
        report travels slim "$@"
        ;;
    restore)
        [ -f "$state" ] || { echo "nothing to restore (not slimmed)"; exit 0; }
        head=$(cat "$state")
        if [ "$(git rev-parse HEAD)" = "$head" ]; then
            git reset -q -- "${paths[@]}"
        else
            echo "WARNING: HEAD moved since slim ($head -> $(git rev-parse HEAD)): the index entries of" \
                 "${paths[*]} come back from $head; if a commit made since deleted them, commit them again" >&2
            git reset -q "$head" -- "${paths[@]}"
        fi
        sed -i "\\|^$begin\$|,\\|^$end\$|d" "$exclude"
        rm -f "$state"
        echo "restored: ${paths[*]} tracked again, exclude lines removed"
        ;;
    copy)
        dest=${2:?usage: device_tree.sh copy DEST [CARRY...]}
        shift 2
        mkdir -p "$dest"
        { git ls-files -z -- . "${not_slim[@]}"; git ls-files -z -o --exclude-standard -- . "${not_slim[@]}"
          for c in "$@"; do find "$c" -type f -print0; done; } | tar -c --null -T - -f - | tar -x -C "$dest" -f -
        report copied slim "$@" || true
        ;;
    *)
        sed -n '2,16p' "$0"
        exit 2
        ;;
esac
