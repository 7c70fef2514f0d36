#!/usr/bin/env python3
"""Draws Lanyard's tray and app icons as PNGs with nothing but the Python standard library.

One glyph per overall health (signed out, all granted, expiring or retrying, action needed), each in
a light-panel and a dark-panel variant, at 32 px (1x) and 64 px (2x), plus the 128 px app icon.
Shapes are signed-distance functions sampled 4x4 per pixel, so edges are anti-aliased and the output
is byte-for-byte reproducible: `python3 icons/generate.py` rewrites every file in place.
"""
import math
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))

# Per-state colours: (fill on light panels, fill on dark panels).
COLOURS = {
    "all_good": ((0x1F, 0x8A, 0x4C), (0x3D, 0xC2, 0x76)),
    "degraded": ((0xB8, 0x6E, 0x00), (0xF2, 0xB1, 0x3B)),
    "action_needed": ((0xC4, 0x2B, 0x1C), (0xFF, 0x6B, 0x5A)),
    # Signed out is an outline only, in the panel's text colour.
    "signed_out": ((0x4A, 0x4F, 0x57), (0xD5, 0xD9, 0xDE)),
}
WHITE = (0xFF, 0xFF, 0xFF)
DARK_GLYPH = (0x1B, 0x1F, 0x24)


def seg_dist(px, py, ax, ay, bx, by):
    """Distance from p to the segment a-b."""
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(px - (ax + t * dx), py - (ay + t * dy))


def coverage(inside, x, y, size, samples=4):
    """Fraction of pixel (x, y) where inside(u, v) holds, u/v in the unit square."""
    hits = 0
    for i in range(samples):
        for j in range(samples):
            u = (x + (i + 0.5) / samples) / size
            v = (y + (j + 0.5) / samples) / size
            hits += inside(u, v)
    return hits / (samples * samples)


def badge_layers(state, dark):
    """The icon as layers [(inside(u, v), rgb)], bottom first, in unit coordinates."""
    fill = COLOURS[state][1 if dark else 0]
    cx, cy, r = 0.5, 0.54, 0.40
    # The lanyard's strap: a short bar above the badge, common to every state.
    strap = (lambda u, v: abs(u - 0.5) < 0.09 and 0.04 < v < 0.2, fill)
    disc = lambda u, v: math.hypot(u - cx, v - cy) <= r
    layers = [strap]
    glyph_colour = DARK_GLYPH if dark else WHITE
    if state == "signed_out":
        ring = lambda u, v: r - 0.085 <= math.hypot(u - cx, v - cy) <= r
        layers.append((ring, fill))
        # A small dot in the middle: "nobody here yet".
        layers.append((lambda u, v: math.hypot(u - cx, v - cy) <= 0.08, fill))
        return layers
    layers.append((disc, fill))
    w = 0.075  # half stroke width of glyphs
    if state == "all_good":
        check = lambda u, v: (seg_dist(u, v, 0.32, 0.55, 0.45, 0.68) <= w
                              or seg_dist(u, v, 0.45, 0.68, 0.69, 0.41) <= w)
        layers.append((check, glyph_colour))
    elif state == "degraded":
        # Clock hands: something is waiting for time (expiring, retrying).
        hands = lambda u, v: (seg_dist(u, v, cx, cy, cx, cy - 0.22) <= w * 0.9
                              or seg_dist(u, v, cx, cy, cx + 0.17, cy + 0.08) <= w * 0.9)
        layers.append((hands, glyph_colour))
    elif state == "action_needed":
        bang = lambda u, v: (seg_dist(u, v, cx, cy - 0.22, cx, cy + 0.05) <= w
                             or math.hypot(u - cx, v - (cy + 0.19)) <= w * 1.1)
        layers.append((bang, glyph_colour))
    return layers


def render(layers, size):
    """RGBA rows of the layered icon at `size` px."""
    rows = []
    for y in range(size):
        row = bytearray()
        for x in range(size):
            r = g = b = a = 0.0
            for inside, rgb in layers:
                c = coverage(inside, x, y, size)
                if c == 0:
                    continue
                # "over" compositing with premultiplied colour.
                r = rgb[0] * c + r * (1 - c)
                g = rgb[1] * c + g * (1 - c)
                b = rgb[2] * c + b * (1 - c)
                a = c + a * (1 - c)
            if a > 0:
                row += bytes((round(r / a), round(g / a), round(b / a), round(a * 255)))
            else:
                row += bytes(4)
        rows.append(bytes(row))
    return rows


def png_bytes(rows, size):
    """The PNG encoding of `rows` (not written anywhere)."""
    return write_png(None, rows, size)


def write_png(path, rows, size):
    def chunk(kind, data):
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + row for row in rows)
    png = (b"\x89PNG\r\n\x1a\n"
           + chunk(b"IHDR", struct.pack(">IIBBBBB", size, size, 8, 6, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9))
           + chunk(b"IEND", b""))
    if path is not None:
        with open(path, "wb") as f:
            f.write(png)
    return png


def write_ico(path, images):
    """A Windows .ico holding PNG images (allowed since Vista): header, one entry per image, data."""
    header = struct.pack("<HHH", 0, 1, len(images))
    offset = len(header) + 16 * len(images)
    entries, data = b"", b""
    for size, png in images:
        side = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset + len(data))
        data += png
    with open(path, "wb") as f:
        f.write(header + entries + data)


def main():
    for state in COLOURS:
        for theme in ("light", "dark"):
            layers = badge_layers(state, theme == "dark")
            for size, suffix in ((32, ""), (64, "@2x")):
                name = f"tray-{state}-{theme}{suffix}.png"
                write_png(os.path.join(HERE, name), render(layers, size), size)
    # The app icon: the all-good badge on a rounded light tile.
    tile = (lambda u, v: max(abs(u - 0.5), abs(v - 0.5)) <= 0.46, (0xF4, 0xF6, 0xF8))
    app = [tile] + badge_layers("all_good", False)
    icon = write_png(os.path.join(HERE, "icon.png"), render(app, 128), 128)
    # The Windows executable's icon (tauri-build embeds it as a resource), small sizes first.
    small = [(size, png_bytes(render(app, size), size)) for size in (16, 32, 48)]
    write_ico(os.path.join(HERE, "icon.ico"), small + [(128, icon)])


if __name__ == "__main__":
    main()
