#!/usr/bin/env python3
"""The official `openai` Python client against a huatu server: generate and edit.

    /work/venv-fixtures/bin/pip install openai
    python scripts/server/openai_check.py http://127.0.0.1:8080 [API_KEY]
"""
import base64
import io
import struct
import sys
import zlib

from openai import OpenAI

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
client = OpenAI(base_url=base + "/v1", api_key=sys.argv[2] if len(sys.argv) > 2 else "unused")


def png(width, height, pixel, channels=3):
    raw = b"".join(b"\x00" + bytes(pixel) * width for _ in range(height))
    color = {3: 2, 4: 6}[channels]
    chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, color, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def size_of(data):
    return struct.unpack(">II", data[16:24])


result = client.images.generate(model="huatu-sdxl", prompt="a photo of a cat", size="64x64", n=2,
                                response_format="b64_json", extra_body={"steps": 3, "seed": 1})
images = [base64.b64decode(item.b64_json) for item in result.data]
assert len(images) == 2 and all(size_of(image) == (64, 64) for image in images), [size_of(i) for i in images]
print(f"generate: {len(images)} PNGs of 64x64, created={result.created}")

result = client.images.generate(prompt="a photo of a cat", size="64x64", response_format="url",
                                extra_body={"steps": 2})
print(f"generate (url): {result.data[0].url}")

# OpenAI's mask convention: transparent where to edit. The left half is transparent here.
rows = []
for y in range(64):
    rows.append(b"".join(bytes([0, 0, 0, 0 if x < 32 else 255]) for x in range(64)))
raw = b"".join(b"\x00" + row for row in rows)
chunk = lambda kind, data: struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
mask_png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 6, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
edited = client.images.edit(image=("image.png", io.BytesIO(png(64, 64, (128, 128, 128))), "image/png"),
                            mask=("mask.png", io.BytesIO(mask_png), "image/png"),
                            prompt="a red apple", response_format="b64_json", extra_body={"steps": 3})
out = base64.b64decode(edited.data[0].b64_json)
assert size_of(out) == (64, 64)
print(f"edit: a {size_of(out)[0]}x{size_of(out)[1]} PNG, job {edited.model_extra['huatu']['job']['id']}")

try:
    client.images.generate(prompt="", size="64x64")
except Exception as error:  # openai.BadRequestError
    print(f"bad request surfaces as {type(error).__name__}: {error}")
print("PASS")
