"""Mutators for the random parser campaign: byte-level edits, and edits
aimed at ELF headers, program headers and Xen notes."""
import json
import re
import struct

from .tokens import BYTE_EDGES, JSON_SEEDS, WORD_EDGES


def mutate(rng, data, tokens=(), seeds=()):
    """data after 1 to 8 random edits."""
    data = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        rng.choice(MUTATORS)(rng, data, tokens, seeds)
    return bytes(data)


def mut_flip(rng, data, tokens, seeds):
    if data:
        data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)


def mut_byte(rng, data, tokens, seeds):
    if data:
        data[rng.randrange(len(data))] = rng.choice(BYTE_EDGES + (rng.randrange(256),))


def mut_word(rng, data, tokens, seeds):
    size = rng.choice((2, 4, 8))
    if len(data) > size:
        at = rng.randrange(len(data) - size)
        data[at:at + size] = (rng.choice(WORD_EDGES) & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def mut_insert(rng, data, tokens, seeds):
    at = rng.randrange(len(data) + 1)
    piece = rng.choice(tokens) if tokens and rng.random() < 0.7 else \
        rng.getrandbits(8 * 8).to_bytes(8, "little")[:rng.randrange(1, 9)]
    data[at:at] = piece


def mut_delete(rng, data, tokens, seeds):
    if data:
        at = rng.randrange(len(data))
        del data[at:at + rng.choice((1, 2, 4, 16, 256))]


def mut_duplicate(rng, data, tokens, seeds):
    if data:
        at = rng.randrange(len(data))
        piece = data[at:at + rng.choice((1, 8, 64, 512))]
        data[at:at] = piece * rng.choice((1, 2, 16))


def mut_truncate(rng, data, tokens, seeds):
    if data:
        del data[rng.randrange(len(data)):]


def mut_splice(rng, data, tokens, seeds):
    if seeds:
        other = rng.choice(seeds)
        at, cut = rng.randrange(len(data) + 1), rng.randrange(len(other) + 1)
        data[at:] = other[cut:]


MUTATORS = (mut_flip, mut_byte, mut_word, mut_insert, mut_delete, mut_duplicate, mut_truncate,
            mut_splice)
ELF_HEADER_FIELDS = ((16, 2), (18, 2), (24, 8), (32, 8), (40, 8), (52, 2), (54, 2), (56, 2),
                     (58, 2), (60, 2), (62, 2), (4, 1), (5, 1), (6, 1), (7, 1))
PHDR_FIELDS = ((0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (40, 8), (48, 8))


def mutate_elf(rng, blob, seeds):
    """A kernel with edits aimed at its headers and notes, or anywhere."""
    data = bytearray(blob)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        rng.choice((elf_header_edit, elf_phdr_edit, elf_note_edit, elf_any_edit))(rng, data, seeds)
    return bytes(data)


def set_field(rng, data, at, size):
    if 0 <= at and at + size <= len(data):
        value = rng.choice(WORD_EDGES + (rng.getrandbits(8 * size), len(data), len(data) - 1))
        data[at:at + size] = (value & ((1 << 8 * size) - 1)).to_bytes(size, "little")


def elf_header_edit(rng, data, seeds):
    set_field(rng, data, *rng.choice(ELF_HEADER_FIELDS))


def elf_phdr_edit(rng, data, seeds):
    if len(data) < 64:
        return
    phoff, phnum = struct.unpack_from("<Q", data, 32)[0], struct.unpack_from("<H", data, 56)[0]
    if phnum:
        offset, size = rng.choice(PHDR_FIELDS)
        set_field(rng, data, phoff + rng.randrange(phnum) * 56 + offset, size)


def elf_note_edit(rng, data, seeds):
    """Edit a Xen note: namesz, descsz, type, or its descriptor."""
    spots = [m.start() for m in re.finditer(rb"Xen\0", bytes(data))]
    if spots:
        name = rng.choice(spots)
        at = rng.choice((name - 12, name - 8, name - 4, name + 4, name + 8))
        set_field(rng, data, at, rng.choice((4, 4, 8)))


def elf_any_edit(rng, data, seeds):
    rng.choice(MUTATORS)(rng, data, (), seeds)


def json_seed(rng):
    """A valid request line, now and then nested very deep."""
    line = json.dumps(rng.choice(JSON_SEEDS)).encode()
    if rng.random() < 0.1:
        depth = rng.choice((10, 100, 1000, 5000, 30000))
        line = line[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    return line
