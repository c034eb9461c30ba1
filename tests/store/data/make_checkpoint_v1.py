"""How ``checkpoint_v1.tar.gz`` and ``checkpoint_v1.json`` were made: run with the ServerTrack that wrote
checkpoint format 1 (commit d6e375f) first on the path, from the repository root:

    PYTHONPATH=/path/to/servertrack-d6e375f python tests/store/data/make_checkpoint_v1.py

It applies ``v1_chunks()`` (deterministic) to an aggregator, writes two checkpoints (the second one
partial: an image plus a redo file on top, as a running service leaves them), and records what the old
code's rings answer for every bucket they hold: the test reads the same answers back from the
converted checkpoint.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parents[2]))  # after the old checkout: for tests.store.checkpoint_samples only

from servertrack.common.aggregator import Aggregator
from servertrack.store.checkpoint import write_checkpoint
from tests.store.checkpoint_samples import FIRST_CHECKPOINT, SERVERS, answers, v1_chunks


def main() -> None:
    now = [0.0]
    aggregator = Aggregator(8, clock=lambda: now[0], closing=True)
    chunks = v1_chunks()
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary) / "checkpoint"
        for chunk_id, (at, names, ts, cpu, ram) in enumerate(chunks, start=1):
            now[0] = at
            aggregator.apply(names, ts, cpu, ram, chunk_id=chunk_id, now=at)
            aggregator.take_closed()
            if chunk_id in (FIRST_CHECKPOINT, len(chunks)):
                write_checkpoint(directory, aggregator.export_changes(), chunk_id, chunk_id + 1, at)
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as archive:
            for path in sorted(directory.iterdir()):
                archive.add(path, arcname=path.name)
    (HERE / "checkpoint_v1.tar.gz").write_bytes(buffer.getvalue())
    (HERE / "checkpoint_v1.json").write_text(json.dumps(answers(aggregator, SERVERS), sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
