#!/usr/bin/env bash
# Consistent backup of a coordinator database and of node key files, safe while the
# coordinator runs.
#
#   scripts/backup.sh DATABASE_URL BACKUP_DIR [KEY_FILE...]
#
# DATABASE_URL is the coordinator's --database / STREAMR_DATABASE_URL:
#   sqlite://FILE     -> BACKUP_DIR/coordinator.db      (sqlite3 .backup: one consistent snapshot)
#   postgres://...    -> BACKUP_DIR/coordinator.pgdump  (pg_dump --format=custom: one transaction)
# KEY_FILE: node identity files (--identity) or any other secret to keep, copied into
# BACKUP_DIR/keys/ with mode 0600. BACKUP_DIR/SHA256SUMS lists every file; scripts/restore.sh
# checks it. BACKUP_DIR must not exist yet.
set -euo pipefail

usage() { echo "usage: $0 DATABASE_URL BACKUP_DIR [KEY_FILE...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
url=$1 out=$2
shift 2

if [[ -e $out ]]; then
    echo "backup: $out already exists; choose a new directory" >&2
    exit 1
fi
umask 077
mkdir -p "$out"

case $url in
    sqlite:*)
        file=${url#sqlite:}
        file=${file#//}
        file=${file%%\?*}
        if [[ ! -f $file ]]; then
            echo "backup: SQLite database $file not found" >&2
            exit 1
        fi
        sqlite3 -bail "$file" ".timeout 30000" ".backup '$out/coordinator.db'"
        ;;
    postgres:* | postgresql:*)
        pg_dump --format=custom --no-owner --file="$out/coordinator.pgdump" --dbname="$url"
        ;;
    *)
        echo "backup: unsupported database URL $url (sqlite://FILE or postgres://...)" >&2
        exit 1
        ;;
esac

if [[ $# -gt 0 ]]; then
    mkdir -p "$out/keys"
    for key in "$@"; do
        name=$(basename -- "$key")
        if [[ -e $out/keys/$name ]]; then
            echo "backup: two key files are named $name" >&2
            exit 1
        fi
        cp -- "$key" "$out/keys/$name"
        chmod 0600 "$out/keys/$name"
    done
fi

(cd "$out" && find . -type f ! -name SHA256SUMS -print0 | sort -z | xargs -0 sha256sum > SHA256SUMS)
echo "backup: written to $out"
