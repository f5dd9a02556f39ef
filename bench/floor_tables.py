"""The floor with the data table (spec §18): bench/floor.py (http.client + json + sqlite3,
one keep-alive connection, one transaction per page, WAL and synchronous=NORMAL, the
`Link` header followed) that also upserts every record into a typed table whose columns
it knows in advance (the bench source's record shape, nested objects flattened as
`parent__child`, arrays as JSON text), in the same transaction as `records`.
Usage: floor_tables.py URL DB [TABLE]   (TABLE: default `feed`)"""

import http.client, json, re, sqlite3, sys, time  # noqa: E401, I001
from urllib.parse import urlsplit

url, db = urlsplit(sys.argv[1]), sqlite3.connect(sys.argv[2])
table = sys.argv[3] if len(sys.argv) > 3 else "feed"
db.execute("PRAGMA journal_mode = WAL"), db.execute("PRAGMA synchronous = NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS records (integration_id INTEGER, key TEXT, data TEXT,"
           " synced_at TEXT, PRIMARY KEY (integration_id, key)) WITHOUT ROWID")  # fmt: skip
db.execute(f"CREATE TABLE IF NOT EXISTS {table} (_key TEXT PRIMARY KEY, _synced_at TEXT, id INTEGER,"
           " name TEXT, status TEXT, score REAL, tags TEXT, owner__id INTEGER, owner__email TEXT,"
           " updated_at TEXT)")  # fmt: skip
upsert = (f"INSERT INTO {table} VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (_key) DO UPDATE SET"
          " _synced_at = excluded._synced_at, id = excluded.id, name = excluded.name,"
          " status = excluded.status, score = excluded.score, tags = excluded.tags,"
          " owner__id = excluded.owner__id, owner__email = excluded.owner__email,"
          " updated_at = excluded.updated_at")  # fmt: skip
conn, path = http.client.HTTPConnection(url.hostname, url.port), f"{url.path}?{url.query}"
now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
while path:
    conn.request("GET", path)
    response = conn.getresponse()
    records = json.loads(response.read())
    keys = [str(r["id"]) for r in records]
    with db:  # one transaction per page, both tables
        db.executemany("INSERT INTO records VALUES (1, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                       " data = excluded.data, synced_at = excluded.synced_at",  # fmt: skip
                       [(k, json.dumps(r), now) for k, r in zip(keys, records, strict=True)])
        db.executemany(upsert, [(k, now, r["id"], r["name"], r["status"], r["score"], json.dumps(r["tags"]),
                                 r["owner"]["id"], r["owner"]["email"], r["updated_at"])
                                for k, r in zip(keys, records, strict=True)])  # fmt: skip
    link = re.search(r'<([^>]*)>;\s*rel="next"', response.getheader("Link") or "")
    path = link and link.group(1)
