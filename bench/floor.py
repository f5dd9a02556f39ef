"""The floor (spec §14): the least a Python program can do to store the bench source's
pages — http.client (one keep-alive connection) + json + sqlite3 upsert, one transaction
per page, WAL and synchronous=NORMAL like syncctl. Usage: floor.py URL DB"""

import http.client, json, re, sqlite3, sys, time  # noqa: E401, I001
from urllib.parse import urlsplit

url, db = urlsplit(sys.argv[1]), sqlite3.connect(sys.argv[2])
db.execute("PRAGMA journal_mode = WAL"), db.execute("PRAGMA synchronous = NORMAL")
db.execute("CREATE TABLE IF NOT EXISTS records (integration_id INTEGER, key TEXT, data TEXT,"
           " synced_at TEXT, PRIMARY KEY (integration_id, key)) WITHOUT ROWID")  # fmt: skip
conn, path = http.client.HTTPConnection(url.hostname, url.port), f"{url.path}?{url.query}"
now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
while path:
    conn.request("GET", path)
    response = conn.getresponse()
    records = json.loads(response.read())
    with db:  # one transaction per page
        db.executemany("INSERT INTO records VALUES (1, ?, ?, ?) ON CONFLICT DO UPDATE SET"
                       " data = excluded.data, synced_at = excluded.synced_at",  # fmt: skip
                       [(str(r["id"]), json.dumps(r), now) for r in records])
    link = re.search(r'<([^>]*)>;\s*rel="next"', response.getheader("Link") or "")
    path = link and link.group(1)
