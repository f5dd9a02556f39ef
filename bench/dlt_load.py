"""dlt's peer of ``syncctl sync`` (spec §14): the ``rest_api`` source reading the bench
source's pages (RFC 8288 ``Link`` pagination) into SQLite through the ``sqlalchemy``
destination, merge write disposition on primary key ``id``. Run by bench/peers.py in its
own process, with telemetry off and a fresh pipelines folder.

    python bench/dlt_load.py URL DB PIPELINES_DIR    # prints the rows loaded
"""

import sys
from urllib.parse import urlsplit

import dlt
from dlt.sources.rest_api import rest_api_source

url, db, pipelines_dir = sys.argv[1:4]
parts = urlsplit(url)
source = rest_api_source(
    {
        "client": {"base_url": f"{parts.scheme}://{parts.netloc}/", "paginator": {"type": "header_link"}},
        "resources": [
            {
                "name": "records",
                "primary_key": "id",
                "write_disposition": "merge",
                "endpoint": {
                    "path": parts.path.lstrip("/"),
                    "params": dict(p.split("=", 1) for p in parts.query.split("&") if p),
                    "data_selector": "$",
                },
            }
        ],
    }
)
pipeline = dlt.pipeline(
    pipeline_name="bench",
    destination=dlt.destinations.sqlalchemy(credentials=f"sqlite:///{db}"),
    dataset_name="main",
    pipelines_dir=pipelines_dir,
)
info = pipeline.run(source)
info.raise_on_failed_jobs()
print(pipeline.last_trace.last_normalize_info.row_counts.get("records", 0))
