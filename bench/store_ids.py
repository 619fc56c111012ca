#!/usr/bin/env python3
"""Message inserts into a store that already holds many: random against
time-ordered message ids.

Nodo's `messages` table has a UNIQUE index on its text id. With random ids,
each message of a batch lands on a random page of that index, so a batch of
32 dirties ~32 pages that the commit writes to the WAL (and the checkpoint
writes again); with ids that sort by creation time, a batch lands on one.
This script builds a database from app/migrations/0001_chat.sql (the messages
table, its indexes and the FTS trigger), fills it with --prefill messages of
random ids over 500 chats, copies it, and then inserts --n messages in
transactions of --batch (WAL, synchronous = FULL, as the node runs), over 25
chats, once with random ids and once with time-ordered ones, alternating
--rounds times. Prints CPU and wall time per message and the bytes the
process wrote per message (/proc/self/io: the WAL and the checkpoints).

    python3 bench/store_ids.py [--prefill 1000000] [--n 64000] [--batch 32] [--rounds 2]

Uses Python's own sqlite3 module, not the node: a measurement of the schema.
The same comparison through the node is bench/README's chat section.
"""
import argparse
import os
import random
import shutil
import sqlite3
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
B57 = "23456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
INSERT = ("INSERT INTO messages(id, chat_id, sender_id, content, content_type, created_at) "
          "VALUES (?,?,?,?,?,?)")


def rnd(n):
    return "".join(random.choice(B57) for _ in range(n))


def random_id(_ms):
    return "MS_" + rnd(12)


def ordered_id(ms):
    """As nodo_signaling::ids::new_ordered_sid: 8 base57 chars of ms, 8 random."""
    chars = []
    for _ in range(8):
        chars.append(B57[ms % 57])
        ms //= 57
    return "MS_" + "".join(reversed(chars)) + rnd(8)


def written():
    fields = dict(line.split(": ") for line in open("/proc/self/io").read().splitlines())
    return int(fields["write_bytes"])


def build(path, prefill):
    db = sqlite3.connect(path)
    db.executescript(open(os.path.join(ROOT, "app", "migrations", "0001_chat.sql")).read())
    db.executescript("PRAGMA journal_mode = WAL; PRAGMA foreign_keys = OFF;")
    chats = [rnd(12) for _ in range(500)]
    done = 0
    while done < prefill:
        step = min(10_000, prefill - done)
        db.executemany(INSERT, [(random_id(0), random.choice(chats), "U", f"hello there {done + k}",
                                 "text", 1) for k in range(step)])
        done += step
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def insert(path, make_id, n, batch):
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
                     "PRAGMA foreign_keys = OFF; PRAGMA temp_store = MEMORY;")
    chats = [rnd(12) for _ in range(25)]
    ms = int(time.time() * 1000)
    w0, c0, t0 = written(), time.process_time(), time.perf_counter()
    for b in range(n // batch):
        rows = [(make_id(ms + b), chats[(b * batch + k) % 25], "U", f"load message {k}", "text", ms)
                for k in range(batch)]
        db.execute("BEGIN")
        db.executemany(INSERT, rows)
        db.execute("COMMIT")
    cpu, wall, w = time.process_time() - c0, time.perf_counter() - t0, written() - w0
    db.close()
    sent = (n // batch) * batch
    return cpu / sent * 1e6, wall / sent * 1e6, w / sent / 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefill", type=int, default=1_000_000)
    ap.add_argument("--n", type=int, default=64_000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="nodo-store-ids-")
    try:
        base = os.path.join(tmp, "base.db")
        build(base, args.prefill)
        print(f"{args.prefill:,} messages already stored; {args.n:,} inserted in transactions "
              f"of {args.batch}\n")
        print("| ids | CPU µs per message | wall µs per message | KiB written per message |")
        print("|---|---:|---:|---:|")
        for r in range(args.rounds):
            order = [("random", random_id), ("time-ordered", ordered_id)]
            if r % 2:
                order.reverse()
            for name, make_id in order:
                work = os.path.join(tmp, "work.db")
                for suffix in ("", "-wal", "-shm"):
                    if os.path.exists(work + suffix):
                        os.remove(work + suffix)
                shutil.copy(base, work)
                cpu, wall, kib = insert(work, make_id, args.n, args.batch)
                print(f"| {name} | {cpu:.1f} | {wall:.1f} | {kib:.2f} |")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
