#!/usr/bin/env bash
# pg-index-cost.sh measures what each index design costs a PostgreSQL
# server per inserted row, with no Go beside it: the same rows (the
# realistic shape of the benchmarks: 1,000 actors, 6 event types, 3
# outcomes, a unique 32-hex request ID, a random /projects/N/items/M
# resource, about 250 bytes of details, two 64-hex hashes) go into a table
# of each design, in 1024-row transactions, round after round, and it
# prints each design's microseconds of the backend's CPU per row (read
# from /proc: run it on the server's machine) and bytes of WAL per row.
#
#   hand     the hand-written baseline's indexes: (actor, time),
#            (event_type, time), (time)
#   text     the library's six indexes before: (col, id) for actor,
#            event_type, resource, outcome, request_id and time
#   hashed   the library's now: resource and request_id indexed by
#            (hashtextextended(col, 0), id)
#   include  hashed, the resource's index INCLUDE (resource), so that a
#            count of one resource can read the index alone
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
export PGOPTIONS="${PGOPTIONS:-} -c client_min_messages=warning"

cols='id BIGINT PRIMARY KEY, time TEXT COLLATE "C" NOT NULL, event_type TEXT NOT NULL, actor TEXT NOT NULL,
	resource TEXT NOT NULL, outcome TEXT NOT NULL, request_id TEXT NOT NULL, details TEXT,
	prev_hash TEXT NOT NULL, hash TEXT NOT NULL'
declare -A indexes=(
	[hand]='(actor, time);(event_type, time);(time)'
	[text]='(actor, id);(event_type, id);(resource, id);(outcome, id);(request_id, id);(time, id)'
	[hashed]='(actor, id);(event_type, id);((hashtextextended(resource, 0)), id);(outcome, id);((hashtextextended(request_id, 0)), id);(time, id)'
	[include]='(actor, id);(event_type, id);((hashtextextended(resource, 0)), id) INCLUDE (resource);(outcome, id);((hashtextextended(request_id, 0)), id);(time, id)'
	[actor]='((hashtextextended(actor, 0)), id);(event_type, id);((hashtextextended(resource, 0)), id);(outcome, id);((hashtextextended(request_id, 0)), id);(time, id)'
)
designs=(hand text hashed include actor)

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

# cpu prints the CPU time, in clock ticks, that process $1 has used.
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

declare -A us wal
for ((r = 0; r <= rounds; r++)); do # round 0 warms the caches and is not shown
	for d in "${designs[@]}"; do
		t=pgcost_$d
		q -c "DROP TABLE IF EXISTS $t" -c "CREATE TABLE $t ($cols)"
		IFS=';' read -ra idx <<<"${indexes[$d]}"
		for i in "${idx[@]}"; do q -c "CREATE INDEX ON $t $i"; done
		q -c "CHECKPOINT"
		# One session, whose backend's CPU time is read around the loop.
		coproc PSQL { psql -X -q -At -v ON_ERROR_STOP=1; }
		echo "SELECT pg_backend_pid(), pg_current_wal_lsn();" >&"${PSQL[1]}"
		IFS='|' read -r pid lsn0 <&"${PSQL[0]}"
		before=$(cpu "$pid")
		cat >&"${PSQL[1]}" <<SQL
DO \$\$ BEGIN FOR i IN 0..$((txs - 1)) LOOP
	INSERT INTO $t SELECT * FROM pgcost_src WHERE id > i * 1024 AND id <= (i + 1) * 1024;
	COMMIT;
END LOOP; END \$\$;
SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn0') / $rows);
SQL
		read -r walrow <&"${PSQL[0]}"
		after=$(cpu "$pid")
		exec {PSQL[1]}>&-
		wait "$PSQL_PID" 2>/dev/null || true
		((r == 0)) && { q -c "DROP TABLE $t"; continue; }
		us[$d]+="$(awk -v c=$((after - before)) -v hz="$hz" -v n="$rows" 'BEGIN {printf "%.1f", c / hz * 1e6 / n}') "
		wal[$d]+="$walrow "
		q -c "DROP TABLE $t"
	done
done
printf '%-7s %-28s %s\n' design "CPU µs a row, per round" "WAL bytes a row, per round"
for d in "${designs[@]}"; do
	printf '%-7s %-28s %s\n' "$d" "${us[$d]}" "${wal[$d]}"
done
