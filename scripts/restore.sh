#!/usr/bin/env bash
# Restores a backup made by scripts/backup.sh into a fresh database, and its node key files
# into a directory. Stop the coordinator (or point it at the new database) first.
#
#   scripts/restore.sh BACKUP_DIR DATABASE_URL [KEY_DIR]
#
# DATABASE_URL names the new database:
#   sqlite://FILE   FILE must not exist yet
#   postgres://...  the database must exist and be empty (createdb NAME); restored in one
#                   transaction, so a failure leaves it empty
# KEY_DIR: where the key files go (created with mode 0700; an existing file is never replaced).
set -euo pipefail

usage() { echo "usage: $0 BACKUP_DIR DATABASE_URL [KEY_DIR]" >&2; exit 2; }
[[ $# -ge 2 && $# -le 3 ]] || usage
backup=$1 url=$2 keys=${3:-}

if [[ ! -f $backup/SHA256SUMS ]]; then
    echo "restore: $backup/SHA256SUMS missing: not a backup made by scripts/backup.sh" >&2
    exit 1
fi
if ! (cd "$backup" && sha256sum --quiet --check SHA256SUMS); then
    echo "restore: $backup is damaged (checksums differ)" >&2
    exit 1
fi
umask 077

case $url in
    sqlite:*)
        file=${url#sqlite:}
        file=${file#//}
        file=${file%%\?*}
        if [[ ! -f $backup/coordinator.db ]]; then
            echo "restore: $backup holds no SQLite backup (coordinator.db)" >&2
            exit 1
        fi
        if [[ -e $file ]]; then
            echo "restore: $file already exists; restore into a fresh database" >&2
            exit 1
        fi
        sqlite3 -bail "$file" ".restore '$backup/coordinator.db'" "PRAGMA integrity_check;" >/dev/null
        ;;
    postgres:* | postgresql:*)
        if [[ ! -f $backup/coordinator.pgdump ]]; then
            echo "restore: $backup holds no PostgreSQL backup (coordinator.pgdump)" >&2
            exit 1
        fi
        tables=$(psql --no-psqlrc --tuples-only --no-align --dbname="$url" \
            --command="SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        if [[ $tables != 0 ]]; then
            echo "restore: the target database has $tables tables; restore into an empty one" >&2
            exit 1
        fi
        pg_restore --no-owner --exit-on-error --single-transaction --dbname="$url" \
            "$backup/coordinator.pgdump"
        ;;
    *)
        echo "restore: unsupported database URL $url (sqlite://FILE or postgres://...)" >&2
        exit 1
        ;;
esac

if [[ -n $keys && -d $backup/keys ]]; then
    mkdir -p -m 0700 "$keys"
    for key in "$backup"/keys/*; do
        target=$keys/$(basename -- "$key")
        if [[ -e $target ]]; then
            echo "restore: $target exists; not replaced" >&2
            exit 1
        fi
        cp -- "$key" "$target"
        chmod 0600 "$target"
    done
fi
echo "restore: $backup restored into $url${keys:+ and $keys}"
