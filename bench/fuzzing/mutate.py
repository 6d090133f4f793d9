"""Structure-aware mutation: BER-TLV / DER trees (lengths, tags, truncation, splicing, nesting), raw bytes, JSON.

Every function takes the ``random.Random`` of one input, so an input is a pure function of (seed, index, samples):
the runner can regenerate any input from its index, e.g. for a process that had to be killed.

A tree is parsed once per sample and never changed: a mutation is a map from an original node to the nodes that
replace it (none: deleted, two: duplicated, one changed one), applied while serialising. Serialisation writes DER
lengths, so a changed node keeps its parents consistent and the mutation reaches the parser behind the outer
structure; a separate operation writes a lying length on purpose.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from edge.errors import TlvError
from edge.protocol import tlv

#: Deepest tree the parser descends into (samples are at most ~10 levels deep).
_MAX_DEPTH = 24


@dataclass(frozen=True, slots=True, eq=False)
class Node:
    """One TLV object. ``children`` is None for a primitive; ``prefix`` is what precedes the children in the value
    (the unused-bits byte of a BIT STRING that holds DER); ``length`` a raw length field that lies, if set."""

    tag: bytes
    value: bytes = b""
    children: tuple[Node, ...] | None = None
    prefix: bytes = b""
    length: bytes | None = None


def _parse(data: bytes, depth: int) -> tuple[Node, ...] | None:
    nodes: list[Node] = []
    pos = 0
    while pos < len(data):
        try:
            _tag, tag_end = tlv.read_tag(data, pos)
            _tag, length, start = tlv.read_header(data, pos)
        except TlvError:
            return None
        end = start + length
        if end > len(data):
            return None
        tag_bytes, value = data[pos:tag_end], data[start:end]
        node = Node(tag_bytes, value)
        if depth < _MAX_DEPTH and value:
            if tag_bytes[0] & 0x20 or (tag_bytes == b"\x04" and value[0] in (0x30, 0x31, 0x02, 0x04)):
                children = _parse(value, depth + 1)
                if children is not None:
                    node = Node(tag_bytes, b"", children)
            elif tag_bytes == b"\x03" and value[0] == 0 and len(value) > 2 and value[1] in (0x30, 0x02):
                children = _parse(value[1:], depth + 1)  # BIT STRING holding DER (keys, signatures)
                if children is not None:
                    node = Node(tag_bytes, b"", children, prefix=b"\x00")
        nodes.append(node)
        pos = end
    return tuple(nodes)


@lru_cache(maxsize=512)
def parse_tree(data: bytes) -> tuple[tuple[Node, ...], tuple[Node, ...]] | None:
    """(top-level nodes, every node in pre-order) of ``data``, or None when it is not TLV throughout."""
    nodes = _parse(data, 0)
    if not nodes:
        return None
    flat: list[Node] = []

    def walk(items: Sequence[Node]) -> None:
        for item in items:
            flat.append(item)
            if item.children is not None:
                walk(item.children)

    walk(nodes)
    return nodes, tuple(flat)


Replacements = dict[int, tuple[Node, ...]]


def serialize(nodes: Sequence[Node], replacements: Replacements | None = None) -> bytes:
    """DER of ``nodes`` with each replaced node swapped for its replacements (taken as they are: a replacement that
    contains the node it replaces does not recurse)."""
    repl = replacements or {}
    out = bytearray()
    for node in nodes:
        for item in repl.get(id(node), (node,)):
            out += _encode(item, repl if item is node else {})
    return bytes(out)


def _encode(node: Node, repl: Replacements) -> bytes:
    body = node.prefix + serialize(node.children, repl) if node.children is not None else node.value
    length = node.length if node.length is not None else tlv.encode_length(len(body))
    return node.tag + length + body


def node_bytes(node: Node) -> bytes:
    return _encode(node, {})


def how_many(rng: random.Random, rate: float, most: int = 12) -> int:
    """1, 2, 3... with geometrically falling odds, capped (a random source may draw an enormous exponential)."""
    return 1 + min(int(rng.expovariate(rate)), most - 1)


# --- interesting values ------------------------------------------------------------------------------------------

INTERESTING_BYTES = (0x00, 0x01, 0x02, 0x04, 0x06, 0x0C, 0x13, 0x1F, 0x20, 0x30, 0x31, 0x3F, 0x40, 0x5F, 0x61,
                     0x6E, 0x7F, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x87, 0x8E, 0x97, 0x99, 0xA0, 0xFE, 0xFF)
INTERESTING_TAGS = (b"\x01", b"\x02", b"\x03", b"\x04", b"\x05", b"\x06", b"\x0c", b"\x13", b"\x16", b"\x17",
                    b"\x18", b"\x1e", b"\x30", b"\x31", b"\xa0", b"\xa1", b"\xa3", b"\x80", b"\x81", b"\x53", b"\x5c",
                    b"\x5f\x1f", b"\x5f\x0e", b"\x7f\x61", b"\x7f\x60", b"\x5f\x2e", b"\x61", b"\x6d", b"\x6e",
                    b"\x6f", b"\x75", b"\x77", b"\x87", b"\x8e", b"\x99", b"\x1f\x81\x80\x01", b"\x1f", b"\xff",
                    b"\x00")  # fmt: skip
INTERESTING_INTS = (0, 1, -1, 2, 3, 127, 128, 255, 256, 65535, 65536, 2**31 - 1, 2**31, 2**32, 2**63, 2**64,
                    -(2**63), 2**127 - 1, 2**255 - 19, 2**256 - 1, 2**384 - 2**128 - 2**96 + 2**32 - 1,
                    2**521 - 1, 10**100, 2**1024 + 1, 2**4096 - 1, 2**16384 + 1, -(2**4096))  # fmt: skip
INTERESTING_STRINGS = ("", " ", "\x00", "A" * 300, "Nguyễn Văn An", "１２３４５６７８９０１２", "٠١٢٣٤٥٦٧٨٩٠١",
                       "0" * 12, "\u202e", "\ufeff", "a\u0301", "Không thời hạn", "01/01/1900", "31/02/2024",
                       "99/99/9999", "00000000", "Nam", "Nữ", "\ud800", "|", "\n", "𝟎𝟏𝟐𝟑𝟒𝟓",
                       "I<VNM0000000000<0000000000000", "<" * 90)  # fmt: skip
LENGTH_LIES = (b"\x00", b"\x7f", b"\x80", b"\x81\x00", b"\x81\x7f", b"\x82\x00\x05", b"\x82\xff\xff",
               b"\x83\xff\xff\xff", b"\x84\xff\xff\xff\xff", b"\x84\x00\xff\xff\xff", b"\x85\x01\x00\x00\x00\x00",
               b"\x88" + b"\xff" * 8, b"\xff")  # fmt: skip


def encode_int(value: int) -> bytes:
    """Two's complement content octets of an INTEGER (minimal)."""
    size = max(1, (value.bit_length() + 8) // 8)
    return value.to_bytes(size, "big", signed=True)


def _string_value(rng: random.Random) -> bytes:
    text = rng.choice(INTERESTING_STRINGS)
    if rng.random() < 0.2:
        return rng.choice((b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"))
    return text.encode("utf-8", errors="surrogatepass")


def _oid_value(rng: random.Random) -> bytes:
    choice = rng.randrange(6)
    if choice == 0:
        return b""
    if choice == 1:
        return bytes([0x80 | rng.randrange(128) for _ in range(rng.randrange(1, 40))])  # never ends: truncated
    if choice == 2:
        return bytes([0x2B] + [0xFF] * rng.choice((5, 19, 21, 30, 3000)) + [0x01])  # an enormous arc
    if choice == 3:
        return tlv.encode_oid(rng.choice(("0.4.0.127.0.7.2.2.1.2", "0.4.0.127.0.7.2.2.3.2.1", "1.2.840.10045.2.1",
                                          "1.2.840.113549.1.1.1", "2.23.136.1.1.1", "1.2.840.10045.4.3.2",
                                          "0.4.0.127.0.7.2.2.4.2.2", "1.3.36.3.3.2.8.1.1.7", "2.5.4.3")))
    if choice == 4:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
    return b"\x80" * rng.randrange(1, 8) + b"\x01"  # non-minimal arc encoding


# --- byte mutation -----------------------------------------------------------------------------------------------


def mutate_bytes(rng: random.Random, data: bytes, pool: Sequence[bytes] = (), *, rounds: int | None = None) -> bytes:
    """AFL-style havoc: bit flips, interesting bytes, arithmetic, block deletes/inserts/copies, splices."""
    buf = bytearray(data)
    for _ in range(rounds if rounds is not None else how_many(rng, 0.6)):
        op = rng.randrange(12)
        if op == 0 and buf:
            pos = rng.randrange(len(buf))
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[rng.randrange(len(buf))] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and buf:
            pos = rng.randrange(len(buf))
            buf[pos] = (buf[pos] + rng.choice((-2, -1, 1, 2, 16, -16, 0x80))) & 0xFF
        elif op == 3 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif op == 4 and len(buf) > 1:
            start = rng.randrange(len(buf))
            del buf[start : start + rng.randrange(1, min(64, len(buf) - start) + 1)]
        elif op == 5:
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = rng.randbytes(rng.choice((1, 2, 4, 8, 32, 200)))
        elif op == 6 and buf:
            start = rng.randrange(len(buf))
            block = buf[start : start + rng.randrange(1, 64)]
            pos = rng.randrange(len(buf) + 1)
            buf[pos:pos] = block * rng.choice((1, 1, 2, 16))
        elif op == 7 and buf:
            del buf[rng.randrange(len(buf)) :]  # truncate
        elif op == 8:
            buf += rng.randbytes(rng.choice((1, 3, 16, 100)))
        elif op == 9 and pool:
            other = rng.choice(pool)
            if other:
                start = rng.randrange(len(other))
                piece = other[start : start + rng.randrange(1, 256)]
                pos = rng.randrange(len(buf) + 1)
                buf[pos : pos + (len(piece) if rng.random() < 0.5 else 0)] = piece
        elif op == 10 and pool and buf:
            other = rng.choice(pool)
            cut = rng.randrange(len(buf) + 1)
            buf = bytearray(buf[:cut] + (other[rng.randrange(len(other) + 1) :] if other else b""))
        elif op == 11 and len(buf) >= 2:
            pos = rng.randrange(len(buf) - 1)
            word = rng.choice((0, 0xFFFF, 0x7FFF, 0x8000, 0x0100, len(buf), len(buf) + 1)) & 0xFFFF
            buf[pos : pos + 2] = word.to_bytes(2, "big")
    return bytes(buf)


# --- tree mutation -----------------------------------------------------------------------------------------------


def raw_node(data: bytes) -> Node:
    """A node that serialises to ``data`` exactly (no tag, no length of its own)."""
    return Node(b"", data, length=b"")


def _wrap(node: Node, tag: bytes, depth: int) -> Node:
    """``node`` inside ``depth`` constructed layers, built without recursion (thousands deep is the point)."""
    size = len(node_bytes(node))
    headers = []
    for _ in range(depth):
        header = tag + tlv.encode_length(size)
        headers.append(header)
        size += len(header)
    return raw_node(b"".join(reversed(headers)) + node_bytes(node))


def _mutate_node(rng: random.Random, node: Node, flat: Sequence[Node], donors: Sequence[Node]) -> tuple[Node, ...]:
    op = rng.randrange(16)
    if op == 0:
        return ()  # delete
    if op == 1:
        return (node,) * rng.choice((2, 2, 3, 50))  # duplicate (a SET of many)
    if op == 2 and donors:
        return (rng.choice(donors),)  # splice from another sample
    if op == 3:
        return (rng.choice(flat),)  # move a node of the same tree here
    if op == 4:
        tag = rng.choice(INTERESTING_TAGS) if rng.random() < 0.7 else bytes([rng.randrange(256)])
        if tag[0] & 0x1F == 0x1F and len(tag) == 1:
            tag += bytes([rng.randrange(128)])
        return (replace(node, tag=tag),)
    if op == 5:
        flipped = bytes([node.tag[0] ^ 0x20]) + node.tag[1:]  # primitive <-> constructed
        return (replace(node, tag=flipped),)
    if op == 6:
        return (replace(node, length=rng.choice(LENGTH_LIES)),)
    if op == 7:
        body = node_bytes(node)[len(node.tag) :]
        return (replace(node, children=None, prefix=b"", value=mutate_bytes(rng, body, rounds=2)),)
    if op == 8 and node.children is None:
        return (replace(node, value=mutate_bytes(rng, node.value)),)
    if op == 9 and node.children is None:
        return (replace(node, value=node.value[: rng.randrange(len(node.value) + 1)]),)
    if op == 10:
        return (_wrap(node, rng.choice((b"\x30", b"\x31", node.tag, b"\xa0")), rng.choice((1, 2, 8, 64, 600, 3000))),)
    if op == 11 and node.children:
        kids = list(node.children)
        rng.shuffle(kids)
        if rng.random() < 0.5:
            kids = kids[: rng.randrange(len(kids))]
        return (replace(node, children=tuple(kids)),)
    if op == 12:
        if node.tag == b"\x06":
            return (replace(node, value=_oid_value(rng), children=None),)
        return (replace(node, value=encode_int(rng.choice(INTERESTING_INTS)), children=None, prefix=b""),)
    if op == 13:
        return (replace(node, value=_string_value(rng), children=None, prefix=b""),)
    if op == 14:
        return (replace(node, value=b"", children=None, prefix=b""),)
    if op == 15 and node.children is not None and donors:
        kids = list(node.children)
        kids.insert(rng.randrange(len(kids) + 1), rng.choice(donors))
        return (replace(node, children=tuple(kids)),)
    return (replace(node, value=rng.randbytes(rng.choice((0, 1, 8, 64, 1000))), children=None, prefix=b""),)


def mutate_tree(rng: random.Random, data: bytes, donors: Sequence[Node] = ()) -> bytes | None:
    """1-4 structural mutations of ``data``'s TLV tree; None when ``data`` is not TLV."""
    tree = parse_tree(data)
    if tree is None:
        return None
    nodes, flat = tree
    replacements: Replacements = {}
    for _ in range(how_many(rng, 1.2)):
        target = rng.choice(flat)
        replacements[id(target)] = _mutate_node(rng, target, flat, donors)
    return serialize(nodes, replacements)


def donor_nodes(samples: Sequence[bytes], limit: int = 400) -> tuple[Node, ...]:
    """Nodes of several samples to splice into others (a certificate where a data group belongs, and so on)."""
    donors: list[Node] = []
    for sample in samples:
        tree = parse_tree(sample)
        if tree is not None:
            donors.extend(tree[1])
    step = max(1, len(donors) // limit)
    return tuple(donors[::step])


def mutate(rng: random.Random, sample: bytes, pool: Sequence[bytes], donors: Sequence[Node] = ()) -> bytes:
    """The usual mix: mostly structure-aware, some havoc, a few random inputs, some of both."""
    roll = rng.random()
    if roll < 0.04:
        return rng.randbytes(rng.choice((0, 1, 2, 5, 16, 64, 300, 3000)))
    if roll < 0.60:
        mutated = mutate_tree(rng, sample, donors)
        if mutated is not None:
            return mutate_bytes(rng, mutated, pool, rounds=1) if rng.random() < 0.15 else mutated
    return mutate_bytes(rng, sample, pool)


# --- JSON mutation -----------------------------------------------------------------------------------------------

_RAW = "\x00raw{}\x00"


def _hostile_json(rng: random.Random) -> str:
    """Raw JSON text for one value that a strict reader must refuse or survive."""
    depth = rng.choice((10, 1000, 100_000))
    choices: list[Callable[[], str]] = [
        lambda: "[" * depth + "]" * depth,
        lambda: '{"a":' * depth + "1" + "}" * depth,
        lambda: "9" * rng.choice((20, 400, 5000, 50_000)),
        lambda: "-" + "9" * 30,
        lambda: rng.choice(("1e400", "-1e400", "NaN", "Infinity", "-Infinity", "1.5", "-0", "0.0", "1E2")),
        lambda: json.dumps(rng.choice(INTERESTING_STRINGS), ensure_ascii=rng.random() < 0.5),
        lambda: '"\\ud800"',
        lambda: '"\\u0000"',
        lambda: rng.choice(("null", "true", "false", "{}", "[]", '""')),
        lambda: '"' + "A" * rng.choice((65, 1000, 2_000_000)) + '"',
        lambda: json.dumps("".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(1, 40)))),
    ]
    return rng.choice(choices)()


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _set(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        copy[head] = _set(value[head], rest, new)
        return copy
    copy_list = list(value)
    copy_list[head] = _set(value[head], rest, new)
    return copy_list


def mutate_json(rng: random.Random, document: dict[str, Any]) -> bytes:
    """JSON text of ``document`` with 1-3 values replaced by hostile ones (deep nesting, huge numbers, non-ASCII,
    lone surrogates, other types), keys dropped or added, or the text itself damaged."""
    raws: list[str] = []
    value: Any = document
    for _ in range(how_many(rng, 1.0)):
        paths = _paths(value)
        path = rng.choice(paths)
        op = rng.randrange(5)
        if op == 0 and path:  # drop the key / element
            parent = path[:-1]
            holder: Any = value
            for step in parent:
                holder = holder[step]
            if isinstance(holder, dict):
                trimmed = {k: v for k, v in holder.items() if k != path[-1]}
                value = _set(value, parent, trimmed)
            continue
        if op == 1:
            container: Any = value
            for step in path:
                container = container[step]
            if isinstance(container, dict):
                key = rng.choice(("extra", "alg", "crit", "kid", "cmd", "\u0000", "result", "seq", "__proto__"))
                raws.append(_hostile_json(rng))
                value = _set(value, path, {**container, key: _RAW.format(len(raws) - 1)})
                continue
        raws.append(_hostile_json(rng))
        value = _set(value, path, _RAW.format(len(raws) - 1))
    text = json.dumps(value, ensure_ascii=rng.random() < 0.5, separators=(",", ":"))
    for index, raw in enumerate(raws):
        text = text.replace(json.dumps(_RAW.format(index)), raw)
        text = text.replace(json.dumps(_RAW.format(index), ensure_ascii=False), raw)
    data = text.encode("utf-8", errors="surrogatepass")
    if rng.random() < 0.1:
        data = mutate_bytes(rng, data, rounds=1)
    return data
