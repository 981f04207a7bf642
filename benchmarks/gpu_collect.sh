#!/usr/bin/env bash
# Wait for a detached gpu_campaign.sh, then pack what it has so far (used on the lent H200, whose
# commands may last 10 minutes while the campaign lasts longer):
#
#   benchmarks/gpu_collect.sh CAMPAIGN_DIR WAIT_S ARCHIVE
#
# Waits until the campaign is DONE or WAIT_S seconds have passed, copies every SQLite database
# with SQLite's own backup (a consistent snapshot even while a sweep writes), prints the log and
# packs the directory into ARCHIVE (a .tgz), the snapshots in snapshot/.
set -u
D=${1:?usage: gpu_collect.sh CAMPAIGN_DIR WAIT_S ARCHIVE}; WAIT=${2:?}; ARCHIVE=${3:?}
S=$(date +%s)
while (( $(date +%s) - S < WAIT )) && [ ! -f "$D/DONE" ]; do sleep 5; done
mkdir -p "$D/snapshot"
for db in "$D"/*.db; do
  [ -f "$db" ] || continue
  python3 -c "import sqlite3,sys; s=sqlite3.connect(sys.argv[1]); d=sqlite3.connect(sys.argv[2]); s.backup(d); d.close()" \
    "$db" "$D/snapshot/$(basename "$db")"
done
cat "$D/campaign.log"
for f in "$D"/*.out; do echo "== $f"; tail -n 4 "$f"; done
# --no-wildcards-match-slash: without it GNU tar's "./*.db" also matches ./snapshot/*.db, which
# dropped every snapshot from the archive of the 2026-11-29 run (the live files are left out on
# purpose: copied mid-write they can be torn).
tar czf "$ARCHIVE" -C "$D" --no-wildcards-match-slash \
  --exclude='./*.db' --exclude='./*.db-wal' --exclude='./*.db-shm' .
packed=$(tar tzf "$ARCHIVE" | grep -c '^\./snapshot/.*\.db$')
echo "packed $packed database snapshot(s) into $ARCHIVE"
