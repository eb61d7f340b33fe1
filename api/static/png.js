// Index PNGs (one byte per pixel = a class id) in and out of the page.
//
// Why not a canvas: a canvas holds RGBA colours, and a palette PNG decoded by the browser gives the
// palette's colours, not the ids. Class masks must round-trip exactly, so the page reads and writes
// the PNG bytes itself: 8-bit greyscale or palette, non-interlaced; zlib via the browser's
// (De)CompressionStream('deflate'), which is the zlib format PNG uses.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC-32 of bytes (PNG chunk checksum). */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

async function zlib(bytes, inflate) {
  const stream = new Blob([bytes]).stream()
    .pipeThrough(inflate ? new DecompressionStream("deflate") : new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  for (let i = 0; i < 4; i++) out[4 + i] = type.charCodeAt(i);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/** Encode a width x height Uint8Array of class ids as an 8-bit greyscale PNG Blob. */
export async function encodeIndexPng(ids, width, height) {
  if (ids.length !== width * height) throw new Error("mask size does not match its width and height");
  const header = new Uint8Array(13);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  header.set([8, 0, 0, 0, 0], 8); // bit depth 8, colour type 0 (grey), deflate, filter 0, no interlace
  const raw = new Uint8Array((width + 1) * height); // each row: filter byte 0 (None), then the ids
  for (let y = 0; y < height; y++) raw.set(ids.subarray(y * width, (y + 1) * width), y * (width + 1) + 1);
  const parts = [new Uint8Array(SIGNATURE), chunk("IHDR", header), chunk("IDAT", await zlib(raw, false)),
    chunk("IEND", new Uint8Array(0))];
  return new Blob(parts, { type: "image/png" });
}

function paeth(a, b, c) {
  const p = a + b - c;
  const pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** Decode an 8-bit greyscale or palette PNG into {width, height, ids: Uint8Array} (raw byte values), or a
 * 16-bit greyscale PNG (segment numbers) into {width, height, ids: Uint16Array}. */
export async function decodeIndexPng(buffer) {
  const bytes = new Uint8Array(buffer);
  if (!SIGNATURE.every((v, i) => bytes[i] === v)) throw new Error("not a PNG file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 8, width = 0, height = 0, depth = 8;
  const idat = [];
  while (pos + 8 <= bytes.length) {
    const len = view.getUint32(pos);
    const type = String.fromCharCode(...bytes.subarray(pos + 4, pos + 8));
    const data = bytes.subarray(pos + 8, pos + 8 + len);
    if (type === "IHDR") {
      width = view.getUint32(pos + 8);
      height = view.getUint32(pos + 12);
      const [bitDepth, colour, , , interlace] = data.subarray(8, 13);
      depth = bitDepth;
      const ok = interlace === 0 && ((depth === 8 && (colour === 0 || colour === 3)) || (depth === 16 && colour === 0));
      if (!ok) {
        throw new Error(`class PNG must be 8-bit grey or palette (or 16-bit grey), non-interlaced (got depth ${depth}, colour type ${colour})`);
      }
    } else if (type === "IDAT") {
      idat.push(data);
    } else if (type === "IEND") {
      break;
    }
    pos += 12 + len;
  }
  if (!width || !idat.length) throw new Error("PNG has no image data");
  const bpp = depth / 8, stride = width * bpp;
  const raw = await zlib(new Blob(idat), true);
  if (raw.length < (stride + 1) * height) throw new Error("PNG image data is truncated");
  const rows = new Uint8Array(stride * height); // unfiltered bytes
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = rows.subarray(y * stride, (y + 1) * stride);
    const up = y ? rows.subarray((y - 1) * stride, y * stride) : new Uint8Array(stride);
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? row[x - bpp] : 0, b = up[x], c = x >= bpp ? up[x - bpp] : 0;
      const pred = filter === 0 ? 0 : filter === 1 ? a : filter === 2 ? b : filter === 3 ? (a + b) >> 1 : filter === 4 ? paeth(a, b, c) : -1;
      if (pred < 0) throw new Error(`PNG row filter ${filter} is invalid`);
      row[x] = (src[x] + pred) & 0xff;
    }
  }
  if (depth === 8) return { width, height, ids: rows };
  const ids = new Uint16Array(width * height); // PNG stores 16-bit samples big-endian
  for (let i = 0; i < ids.length; i++) ids[i] = (rows[2 * i] << 8) | rows[2 * i + 1];
  return { width, height, ids };
}
