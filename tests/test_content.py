"""Content hashes: files and directories, cached by size and modification time."""

import os

import ttc_runtime.content as content
from ttc_runtime.content import MISSING, ContentHashes


def test_a_file_is_read_once_until_its_size_or_time_changes(tmp_path, monkeypatch):
    data = tmp_path / "train.jsonl"
    data.write_text('{"problem": "1+1"}\n')
    reads = []
    real = content._sha256_of_file
    monkeypatch.setattr(content, "_sha256_of_file", lambda path: reads.append(path) or real(path))
    cache = tmp_path / "run" / "content_hashes.json"
    hashes = ContentHashes(cache)
    first = hashes.of(data)
    assert hashes.of(data) == first and len(reads) == 1
    hashes.save()
    assert ContentHashes(cache).of(data) == first and len(reads) == 1  # the cache file serves a new run

    later = data.stat().st_mtime_ns + 10**9
    data.write_text('{"problem": "1+2"}\n')  # same size, new content, a second later
    os.utime(data, ns=(later, later))
    assert ContentHashes(cache).of(data) != first and len(reads) == 2

    data.write_text('{"problem": "1+1"}\n')
    os.utime(data, ns=(later + 10**9, later + 10**9))
    assert ContentHashes(cache).of(data) == first  # the old content again: the same hash


def test_a_directory_hash_covers_every_file_and_its_name_but_not_hidden_ones(tmp_path):
    model = tmp_path / "model"
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "sub" / "weights.bin").write_bytes(b"\x00" * 10)
    hashes = ContentHashes()
    first = hashes.of(model)
    (model / ".cache").mkdir()
    (model / ".cache" / "download.lock").write_text("x")
    assert hashes.of(model) == first
    (model / "sub" / "weights.bin").write_bytes(b"\x01" * 10)
    second = hashes.of(model)
    assert second != first
    (model / "sub" / "weights.bin").rename(model / "weights.bin")
    assert hashes.of(model) not in (first, second)
    assert hashes.of(tmp_path / "absent") == MISSING


def test_a_corrupt_cache_file_is_ignored_and_rewritten(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    cache = tmp_path / "content_hashes.json"
    cache.write_text("{not json")
    hashes = ContentHashes(cache)
    digest = hashes.of(data)
    hashes.save()
    assert ContentHashes(cache).of(data) == digest and str(data.resolve()) in cache.read_text()
