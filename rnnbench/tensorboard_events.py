"""TensorBoard events: a run's scalars mirrored as event files inside its own folder.

Every run writes `<run folder>/tensorboard/events.out.tfevents.*`, so `tensorboard --logdir runs/`
lists each run (those of sweeps, `--jobs` workers and tuning trials too) as `<run id>/tensorboard`.
Per epoch, one event at step = epoch holds each number of the history line under the history's own
key (loss, accuracy, val_loss, val_accuracy, learning_rate, seconds, ...); a new run's first events
hold its command and config as text, and a completed run's last one its results under `result/`.

Events are the tensorboard package's protocol buffers in TFRecord framing written here, never
through TensorFlow or `tensorboard.summary`: tensorboard's EventFileWriter opens files with
`tf.io.gfile`, which imports TensorFlow (seconds and hundreds of megabytes) into a JAX or torch
run, and even its RecordWriter imports `tensorboard.summary`, 0.1 to 1 s more per process. The run
folder stays the record and this is a copy of it: a failure to write costs the copy, never the
run (one warning line, then no more events for that run). Writing costs well under a millisecond
an epoch (scripts/bench_tensorboard.py), so there is no switch to turn it off.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Optional, Sequence

from rnnbench.observers import RunObserver
from rnnbench.record import RunRecord, RunResult

# The subfolder of a run folder that holds its event files.
FOLDER = "tensorboard"
# A completed run's results, written once at its last epoch's step under RESULT_PREFIX + key.
RESULT_PREFIX = "result/"
RESULT_KEYS = ("best_val_accuracy", "best_val_loss", "val_macro_f1", "test_accuracy", "test_loss", "test_macro_f1")
CONFIG_TAG = "config"
# What TensorBoard's own writers put in every file's first event.
FILE_VERSION = "brain.Event:2"
# Tells apart two event files that one process opens within the same second.
_file_numbers = itertools.count()


def _warn_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


class TensorBoardEvents(RunObserver):
    """Writes one run's TensorBoard events. A resumed run first writes each epoch of its history
    that the folder lacks (one cut off by the interruption), then the epochs it trains, so every
    epoch is one step, once."""

    def __init__(self, warn: Callable[[str], None] = _warn_on_stderr):
        self.warn = warn
        self.folder: Optional[Path] = None
        self.file: Optional[BinaryIO] = None
        self.written: set[int] = set()
        self.failed = False

    def opened(self, run_dir: Path, record: RunRecord, history: Sequence[dict[str, Any]]) -> None:
        folder = self.folder = run_dir / FOLDER
        self._attempt(lambda: self._open(folder, record, history))

    def epoch_ended(self, entry: dict[str, Any], history: Sequence[dict[str, Any]]) -> None:
        self._attempt(lambda: self._write_epochs([entry]))

    def closed(self, record: RunRecord) -> None:
        if record.status == "completed":
            self._attempt(lambda: self._write_result(record.result or RunResult()))
        self._close()

    def _open(self, folder: Path, record: RunRecord, history: Sequence[dict[str, Any]]) -> None:
        from tensorboard.compat.proto import event_pb2

        earlier = recorded_epochs(folder)
        folder.mkdir(exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_numbers)}"
        # "x": an event file is never overwritten, whoever else writes in this folder.
        self.file = open(folder / name, "xb")
        self._write(event_pb2.Event(wall_time=time.time(), file_version=FILE_VERSION))
        if earlier is None:
            self._write(_config_event(record))
        else:
            self.written = earlier
        self._write_epochs(history)

    def _write_epochs(self, entries: Sequence[dict[str, Any]]) -> None:
        for entry in entries:
            epoch = int(entry["epoch"])
            if epoch in self.written:
                continue
            values = {key: value for key, value in entry.items() if key != "epoch" and _is_number(value)}
            self._write(_scalars_event(epoch, values))
            self.written.add(epoch)
        # Flushed every epoch, so that TensorBoard shows a run as it trains and a killed process
        # loses no epoch that its checkpoint holds.
        self._file().flush()

    def _write_result(self, result: RunResult) -> None:
        values = {RESULT_PREFIX + key: result.value(key) for key in RESULT_KEYS if _is_number(result.value(key))}
        self._write(_scalars_event(int(result.epochs_run or 0), values))
        self._file().flush()

    def _write(self, event: Any) -> None:
        self._file().write(record_bytes(event.SerializeToString()))

    def _file(self) -> BinaryIO:
        if self.file is None:
            raise ValueError("no event file is open")
        return self.file

    def _attempt(self, action: Callable[[], None]) -> None:
        """Do `action` unless an earlier one failed; a failure becomes one warning line."""
        if self.failed:
            return
        try:
            action()
        except Exception as error:
            self.failed = True
            self._close()
            where = self.folder.parent.name if self.folder is not None else "this run"
            reason = " ".join(str(error).split()) or type(error).__name__
            self.warn(
                f"warning: TensorBoard events of {where} are not written from here on ({reason}); the run itself goes on"
            )

    def _close(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            try:
                file.close()
            except Exception:
                pass  # Only the copy is lost, and a warning has said so if anything was.


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _scalars_event(step: int, values: dict[str, float]) -> Any:
    from tensorboard.compat.proto import event_pb2, summary_pb2

    # `simple_value`, the scalar form that every TensorBoard reads; it holds a 32-bit float.
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=float(value)) for tag, value in values.items()]
    )
    return event_pb2.Event(wall_time=time.time(), step=step, summary=summary)


def _config_event(record: RunRecord) -> Any:
    """The run's command and config as Markdown, for TensorBoard's Text tab, at step 0."""
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2, types_pb2
    from tensorboard.plugins.text import metadata

    text = f"`{record.command or ''}`\n\n```\n{json.dumps(record.config, indent=2)}\n```"
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_STRING, tensor_shape=tensor_shape_pb2.TensorShapeProto(), string_val=[text.encode("utf-8")]
    )
    value = summary_pb2.Summary.Value(
        tag=CONFIG_TAG, metadata=metadata.create_summary_metadata("config", ""), tensor=tensor
    )
    return event_pb2.Event(wall_time=time.time(), step=0, summary=summary_pb2.Summary(value=[value]))


def recorded_epochs(folder: Path) -> Optional[set[int]]:
    """The epochs whose scalars the event files in `folder` hold; None when it holds no event file."""
    from tensorboard.compat.proto import event_pb2

    files = sorted(folder.glob("*tfevents*")) if folder.is_dir() else []
    if not files:
        return None
    epochs = set()
    for path in files:
        for payload in _records(path):
            event = event_pb2.Event.FromString(payload)
            if event.step >= 1 and any(not value.tag.startswith(RESULT_PREFIX) for value in event.summary.value):
                epochs.add(event.step)
    return epochs


def record_bytes(data: bytes) -> bytes:
    """`data` as one TFRecord: its length (8 bytes, little-endian), the length's masked CRC,
    the data, and the data's masked CRC (4 bytes each)."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc32c(length)) + data + struct.pack("<I", masked_crc32c(data))


def _records(path: Path) -> Iterator[bytes]:
    """The whole records of a TFRecord file up to the first damaged one: a process killed while
    writing leaves its last record cut short. Read here, not with tensorboard's reader, which
    imports TensorFlow when it is installed."""
    content = path.read_bytes()
    position = 0
    while position + 12 <= len(content):
        header = content[position : position + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", content[position + 8 : position + 12])
        end = position + 12 + length + 4
        if header_crc != masked_crc32c(header) or end > len(content):
            return
        payload = content[position + 12 : end - 4]
        if struct.unpack("<I", content[end - 4 : end])[0] != masked_crc32c(payload):
            return
        yield payload
        position = end


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


# CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), one entry per byte value.
_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The CRC-32C of `data`, masked as TFRecord files store it: rotated right by 15 bits and
    offset by 0xA282EAD8, so that a CRC of data that holds CRCs is not itself trivial."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
