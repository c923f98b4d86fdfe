#!/usr/bin/env bash
# pg-index-cost.sh measures what each index design costs a PostgreSQL
# server per inserted row, with no Go beside it: the same rows (the
# realistic shape of the benchmarks: 1,000 actors, 6 event types, 3
# outcomes, a unique 32-hex request ID, a random /projects/N/items/M
# resource, about 250 bytes of details, two 64-hex hashes) go into a table
# of each design, in 1024-row transactions, round after round, and it
# prints each design's microseconds per row (the backend's wall time of
# the insert loop) and bytes of WAL per row.
#
#   hand     the hand-written baseline's indexes: (actor, time),
#            (event_type, time), (time)
#   text     the library's six indexes before: (col, id) for actor,
#            event_type, resource, outcome, request_id and time
#   hashed   the library's now: resource and request_id indexed by
#            (hashtextextended(col, 0), id)
#   actor    hashed, with actor hashed too (not done: a count of one
#            actor's entries would read its rows)
#
# It uses psql with the usual PG* variables (PGHOST, PGPORT, PGUSER,
# PGDATABASE), creates its tables (pgcost_*) in the current schema, and
# drops them at the end. Give it a server
# with fsync on, on a quiet machine:
#
#   PGHOST=127.0.0.1 PGPORT=5432 PGUSER=postgres scripts/pg-index-cost.sh [ROWS] [ROUNDS]
#
# ROWS defaults to 100352 (98 transactions), ROUNDS to 3.
set -euo pipefail

rows=${1:-100352}
rounds=${2:-3}
txs=$((rows / 1024))
rows=$((txs * 1024))
q() { psql -X -q -At -v ON_ERROR_STOP=1 "$@"; }

cols='id BIGINT PRIMARY KEY, time TEXT COLLATE "C" NOT NULL, event_type TEXT NOT NULL, actor TEXT NOT NULL,
	resource TEXT NOT NULL, outcome TEXT NOT NULL, request_id TEXT NOT NULL, details TEXT,
	prev_hash TEXT NOT NULL, hash TEXT NOT NULL'
declare -A indexes=(
	[hand]='(actor, time);(event_type, time);(time)'
	[text]='(actor, id);(event_type, id);(resource, id);(outcome, id);(request_id, id);(time, id)'
	[hashed]='(actor, id);(event_type, id);((hashtextextended(resource, 0)), id);(outcome, id);((hashtextextended(request_id, 0)), id);(time, id)'
	[actor]='((hashtextextended(actor, 0)), id);(event_type, id);((hashtextextended(resource, 0)), id);(outcome, id);((hashtextextended(request_id, 0)), id);(time, id)'
)
designs=(hand text hashed actor)

cleanup() {
	q -c "DROP TABLE IF EXISTS pgcost_src" >/dev/null 2>&1 || true
	for d in "${designs[@]}"; do q -c "DROP TABLE IF EXISTS pgcost_$d" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT

q <<SQL
SELECT setseed(0.13);
DROP TABLE IF EXISTS pgcost_src;
CREATE TABLE pgcost_src AS SELECT g AS id,
	to_char(timestamp '2026-01-01' + g * interval '1 ms', 'YYYY-MM-DD"T"HH24:MI:SS.US"000Z"') AS time,
	(ARRAY['user.login','user.logout','doc.read','doc.write','doc.delete','admin.change'])[1 + (random() * 5)::int] AS event_type,
	'user-' || (random() * 999)::int AS actor,
	'/projects/' || lpad(((random() * 999999)::int)::text, 6, '0') || '/items/' || lpad(((random() * 99999)::int)::text, 5, '0') AS resource,
	(ARRAY['success','failure','denied'])[1 + (random() * 2)::int] AS outcome,
	md5(random()::text) AS request_id,
	'{"ip":"10.' || (random() * 255)::int || '.0.1","ua":"' || repeat('x', 200) || '"}' AS details,
	md5(random()::text) || md5(random()::text) AS prev_hash,
	md5(random()::text) || md5(random()::text) AS hash
	FROM generate_series(1, $rows) g;
ALTER TABLE pgcost_src ADD PRIMARY KEY (id);
SQL

declare -A us wal
for ((r = 1; r <= rounds; r++)); do
	for d in "${designs[@]}"; do
		t=pgcost_$d
		q -c "DROP TABLE IF EXISTS $t" -c "CREATE TABLE $t ($cols)"
		IFS=';' read -ra idx <<<"${indexes[$d]}"
		for i in "${idx[@]}"; do q -c "CREATE INDEX ON $t $i"; done
		q -c "CHECKPOINT"
		out=$(q <<SQL
SELECT pg_current_wal_lsn() AS lsn0, clock_timestamp() AS t0 \gset
DO \$\$ BEGIN FOR i IN 0..$((txs - 1)) LOOP
	INSERT INTO $t SELECT * FROM pgcost_src WHERE id > i * 1024 AND id <= (i + 1) * 1024;
	COMMIT;
END LOOP; END \$\$;
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1e6 / $rows, 1),
	round(pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0') / $rows);
SQL
)
		us[$d]+="${out%%|*} "
		wal[$d]+="${out##*|} "
		q -c "DROP TABLE $t"
	done
done
printf '%-7s %-28s %s\n' design "µs a row, per round" "WAL bytes a row, per round"
for d in "${designs[@]}"; do
	printf '%-7s %-28s %s\n' "$d" "${us[$d]}" "${wal[$d]}"
done
