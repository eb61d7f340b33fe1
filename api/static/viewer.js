// The map: an image with pan and zoom, the class layer (editable with a brush, polygons and one-click
// fills, see tools.js) and the flags on top.
//
// Everything lives in one "stage" of W x H CSS pixels (one per image pixel) moved by a CSS
// transform, so the image, the class canvas and the flag SVG stay registered at any zoom.
// Flags arrive in the source CRS; they are mapped to pixels by inverting the grid's affine
// transform [a, b, c, d, e, f] (x = a*col + b*row + c, y = d*col + e*row + f).

import { polygonPixels, regionPixels, segmentPixels } from "./tools.js";

const SVG_NS = "http://www.w3.org/2000/svg";
const MIN_ZOOM = 0.05;
const MAX_ZOOM = 40;
const CLICK_SLOP = 4; // pixels a pointer may move and still count as a click
const MAX_UNDO = 30; // edits kept for undo (one copy of the class map and the painted map each) ...
const UNDO_BYTES = 200e6; // ... but no more copies than fit in this many bytes (large images)
const CLOSE_PX = 8; // a polygon click this close (screen pixels) to the first vertex closes it
export const CLICK_TOOLS = ["polygon", "region", "segment"]; // tools that act on a click (a drag pans)

/** The function that maps source-CRS (x, y) to pixel (col, row) for a rasterio Affine. */
export function inverseAffine([a, b, c, d, e, f]) {
  const det = a * e - b * d;
  if (!det) throw new Error("the result's grid transform cannot be inverted");
  return (x, y) => [(e * (x - c) - b * (y - f)) / det, (-d * (x - c) + a * (y - f)) / det];
}

function ringsOf(geometry) {
  if (!geometry) return [];
  if (geometry.type === "Polygon") return geometry.coordinates;
  if (geometry.type === "MultiPolygon") return geometry.coordinates.flat();
  return [];
}

export class Viewer {
  constructor(viewport) {
    this.viewport = viewport;
    this.stage = viewport.querySelector(".stage");
    this.image = this.stage.querySelector("img");
    this.canvas = this.stage.querySelector("#classes-canvas");
    this.edges = this.stage.querySelector("#segments-canvas"); // segment outlines, shown with the segment tool
    this.svg = this.stage.querySelector("#flags-svg");
    this.draft = this.stage.querySelector("#draw-svg"); // the polygon being drawn
    this.cursor = viewport.querySelector(".brush-cursor");
    this.width = 0;
    this.height = 0;
    this.zoom = 1;
    this.tx = 0;
    this.ty = 0;
    this.tool = "pan"; // or "paint" (brush), or one of CLICK_TOOLS
    this.brush = { classId: 1, radius: 4 };
    this.ids = null; // Uint8Array of class ids, W x H, when the class layer is loaded
    this.original = null; // the ids as loaded (the prediction), to count edits and find predicted regions
    this.painted = null; // Uint8Array, 1 where the user set a class with any tool
    this.partial = false; // true: unpainted pixels are saved as ignore (and drawn transparent)
    this.segments = null; // Uint16Array of segment numbers (from the server), for the segment tool
    this.vertices = []; // the polygon being drawn, image coordinates
    this.lastPolygon = null; // the vertices of the last polygon filled (for the browser test)
    this.history = []; // {ids, painted} before each edit, newest last (undo)
    this.palette = new Map(); // class id -> [r, g, b]
    this.onSelect = () => {};
    this.onEdit = () => {}; // after each edit (stroke, polygon, fill) and undo
    this.onAction = () => {}; // on each annotation action (a click or a stroke), to time the work
    this._bindInput();
  }

  /** Show a new image of width x height pixels, clearing flags and classes, and fit it. */
  async setImage(url, width, height) {
    this.width = width;
    this.height = height;
    for (const el of [this.stage, this.image, this.canvas, this.edges, this.svg, this.draft]) {
      el.style.width = `${width}px`;
      el.style.height = `${height}px`;
    }
    this.canvas.width = this.edges.width = width;
    this.canvas.height = this.edges.height = height;
    this.svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.draft.setAttribute("viewBox", `0 0 ${width} ${height}`);
    this.svg.replaceChildren();
    this.ids = null;
    this.original = null;
    this.painted = null;
    this.setSegments(null);
    this.history = [];
    this.cancelPolygon();
    this.canvas.getContext("2d").clearRect(0, 0, width, height);
    this.viewport.classList.add("has-image");
    await this.swapImage(url);
    this.fit();
  }

  /** Change the picture under the layers (after / before) without touching anything else. */
  swapImage(url) {
    this.image.hidden = !url;
    if (!url) {
      this.image.removeAttribute("src");
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      this.image.onload = () => resolve();
      this.image.onerror = () => reject(new Error(`could not load the image ${url}`));
      this.image.src = url;
    });
  }

  /** Draw flags (a GeoJSON FeatureCollection in the source CRS) with colours by kind. */
  setFlags(collection, transform, kindColors) {
    const toPixel = inverseAffine(transform);
    this.svg.replaceChildren();
    for (const feature of collection.features || []) {
      const p = feature.properties || {};
      const d = ringsOf(feature.geometry).map((ring) => "M" + ring.map(([x, y]) => {
        const [col, row] = toPixel(x, y);
        return `${col.toFixed(2)} ${row.toFixed(2)}`;
      }).join("L") + "Z").join("");
      if (!d) continue;
      const path = document.createElementNS(SVG_NS, "path");
      path.setAttribute("d", d);
      path.setAttribute("class", "flag" + (p.suspected_illegal ? " suspected" : ""));
      path.dataset.id = String(p.id);
      path.dataset.kind = p.kind;
      path.dataset.suspected = String(!!p.suspected_illegal);
      const rgb = kindColors[p.kind] || [255, 255, 255];
      path.style.setProperty("--kind", `rgb(${rgb.join(",")})`);
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = `#${p.id} ${p.kind}${p.suspected_illegal ? " (suspected illegal)" : ""}`;
      path.append(title);
      this.svg.append(path);
    }
  }

  /** Show only the flags for which show({kind, suspected}) is true. */
  filterFlags(show) {
    for (const path of this.svg.querySelectorAll(".flag")) {
      path.classList.toggle("hidden", !show({ kind: path.dataset.kind, suspected: path.dataset.suspected === "true" }));
    }
  }

  select(id) {
    for (const path of this.svg.querySelectorAll(".flag")) path.classList.toggle("selected", path.dataset.id === String(id));
  }

  /** Zoom so that the flag with this id fills most of the view. */
  zoomToFlag(id) {
    const path = this.svg.querySelector(`.flag[data-id="${CSS.escape(String(id))}"]`);
    if (!path) return;
    const box = path.getBBox();
    const pad = Math.max(box.width, box.height) * 0.6 + 8;
    this.fitBox(box.x - pad, box.y - pad, box.width + 2 * pad, box.height + 2 * pad, 8);
  }

  fit() {
    this.fitBox(0, 0, this.width, this.height, 4);
  }

  fitBox(x, y, w, h, maxZoom) {
    const vw = this.viewport.clientWidth, vh = this.viewport.clientHeight;
    if (!w || !h || !vw || !vh) return;
    this.zoom = Math.min(maxZoom, Math.max(MIN_ZOOM, Math.min(vw / w, vh / h)));
    this.tx = (vw - w * this.zoom) / 2 - x * this.zoom;
    this.ty = (vh - h * this.zoom) / 2 - y * this.zoom;
    this._apply();
  }

  zoomAt(factor, cx, cy) {
    const zoom = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.zoom * factor));
    this.tx = cx - (cx - this.tx) * (zoom / this.zoom);
    this.ty = cy - (cy - this.ty) * (zoom / this.zoom);
    this.zoom = zoom;
    this._apply();
  }

  _apply() {
    this.stage.style.transform = `translate(${this.tx}px, ${this.ty}px) scale(${this.zoom})`;
    this.stage.style.setProperty("--zoom", String(this.zoom));
    this.viewport.classList.toggle("zoomed-in", this.zoom >= 2);
  }

  /** Viewport client coordinates -> image pixel coordinates. */
  toImage(clientX, clientY) {
    const r = this.viewport.getBoundingClientRect();
    return [(clientX - r.left - this.tx) / this.zoom, (clientY - r.top - this.ty) / this.zoom];
  }

  // ---- class layer -------------------------------------------------------------------------

  setPalette(classes) {
    this.palette = new Map(classes.map((c) => [c.id, c.color]));
  }

  /** Load a W x H array of class ids as the class layer (a copy: edits never touch the original). */
  setClasses(ids) {
    if (ids.length !== this.width * this.height) throw new Error("the class map does not match the image size");
    this.original = ids;
    this.ids = ids.slice();
    this.painted = new Uint8Array(ids.length);
    this.history = [];
    this.cancelPolygon();
    this._render(0, 0, this.width, this.height);
  }

  /** Pixels the user set with any tool (whatever class they had before). */
  paintedPixels() {
    if (!this.painted) return 0;
    let n = 0;
    for (let i = 0; i < this.painted.length; i++) n += this.painted[i];
    return n;
  }

  /** Partial annotation: unpainted pixels are ignored (saved as `ignore`, drawn transparent), or keep the prediction. */
  setPartial(on) {
    this.partial = on;
    if (this.ids) this._render(0, 0, this.width, this.height);
  }

  /** The class ids to save: everything as shown, or (partial) only what was painted, ignore elsewhere. */
  maskForSave(ignore = 255) {
    if (!this.partial) return this.ids.slice();
    const out = new Uint8Array(this.ids.length).fill(ignore);
    for (let i = 0; i < out.length; i++) if (this.painted[i]) out[i] = this.ids[i];
    return out;
  }

  /** Keep a copy of the class and painted maps for undo, within the memory budget. */
  _snapshot() {
    this.history.push({ ids: this.ids.slice(), painted: this.painted.slice() });
    const limit = Math.max(1, Math.min(MAX_UNDO, Math.floor(UNDO_BYTES / (2 * this.ids.length))));
    while (this.history.length > limit) this.history.shift();
  }

  /** Set these pixels (indexes) to the brush class as one undoable edit; returns how many changed class. */
  applyPixels(indexes) {
    if (!this.ids || !indexes.length) return 0;
    this._snapshot();
    const id = this.brush.classId;
    let changed = 0, x0 = this.width, y0 = this.height, x1 = -1, y1 = -1;
    for (const i of indexes) {
      if (this.ids[i] !== id) changed++;
      this.ids[i] = id;
      this.painted[i] = 1;
      const x = i % this.width, y = (i - x) / this.width;
      if (x < x0) x0 = x;
      if (x > x1) x1 = x;
      if (y < y0) y0 = y;
      if (y > y1) y1 = y;
    }
    this._render(x0, y0, x1 - x0 + 1, y1 - y0 + 1);
    this.onEdit();
    return changed;
  }

  /** Region fill: the predicted region (connected pixels of one predicted class) under image pixel (x, y). */
  fillRegion(x, y) {
    return this.applyPixels(regionPixels(this.original, this.width, this.height, Math.floor(x), Math.floor(y)));
  }

  /** Segment fill: the image segment under image pixel (x, y); false while no segments are loaded. */
  fillSegment(x, y) {
    if (!this.segments) return false;
    return this.applyPixels(segmentPixels(this.segments, this.width, this.height, Math.floor(x), Math.floor(y)));
  }

  setSegments(segments) {
    if (segments && segments.length !== this.width * this.height) throw new Error("the segments do not match the image size");
    this.segments = segments;
    const ctx = this.edges.getContext("2d");
    ctx.clearRect(0, 0, this.width, this.height);
    if (!segments) return;
    // a pixel is on an outline where its segment differs from the one to its right or below
    const img = ctx.createImageData(this.width, this.height);
    for (let y = 0; y < this.height; y++) {
      for (let x = 0; x < this.width; x++) {
        const i = y * this.width + x;
        const edge = (x + 1 < this.width && segments[i + 1] !== segments[i]) || (y + 1 < this.height && segments[i + this.width] !== segments[i]);
        if (edge) img.data.set([255, 255, 255, 170], i * 4);
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  // ---- polygon tool: click vertices, close on the first one (or Enter), fill with the brush class ----

  addVertex(x, y) {
    const first = this.vertices[0];
    if (this.vertices.length >= 3 && Math.hypot(x - first[0], y - first[1]) * this.zoom <= CLOSE_PX) return this.closePolygon();
    this.vertices.push([x, y]);
    this._drawDraft();
    return 0;
  }

  /** Fill the polygon drawn so far (3 vertices or more) and start a new one; returns the pixels changed. */
  closePolygon() {
    if (this.vertices.length < 3) return 0;
    const vertices = this.vertices;
    this.cancelPolygon();
    this.lastPolygon = vertices;
    return this.applyPixels(polygonPixels(vertices, this.width, this.height));
  }

  popVertex() {
    const had = this.vertices.length > 0;
    this.vertices.pop();
    this._drawDraft();
    return had;
  }

  cancelPolygon() {
    this.vertices = [];
    this._drawDraft();
  }

  _drawDraft() {
    if (!this.draft) return;
    this.draft.replaceChildren();
    if (!this.vertices.length) return;
    const line = document.createElementNS(SVG_NS, "polyline");
    line.setAttribute("points", this.vertices.map(([x, y]) => `${x},${y}`).join(" "));
    line.setAttribute("class", "draft");
    this.draft.append(line);
    for (const [i, [x, y]] of this.vertices.entries()) {
      const dot = document.createElementNS(SVG_NS, "circle");
      Object.entries({ cx: x, cy: y, class: i ? "vertex" : "vertex first" }).forEach(([k, v]) => dot.setAttribute(k, v));
      this.draft.append(dot);
    }
  }

  /** Pixels whose class differs from the loaded class map. */
  changedPixels() {
    if (!this.ids) return 0;
    let n = 0;
    for (let i = 0; i < this.ids.length; i++) if (this.ids[i] !== this.original[i]) n++;
    return n;
  }

  /** Take back the last edit (a vertex, while a polygon is being drawn); false when there is none. */
  undo() {
    if (this.vertices.length) return this.popVertex();
    const previous = this.history.pop();
    if (!previous) return false;
    this.ids = previous.ids;
    this.painted = previous.painted;
    this._render(0, 0, this.width, this.height);
    this.onEdit();
    return true;
  }

  /** Repaint the canvas for a rectangle of the id array (ignore = transparent). */
  _render(x0, y0, w, h) {
    if (w <= 0 || h <= 0) return;
    const ctx = this.canvas.getContext("2d");
    const img = ctx.createImageData(w, h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (y0 + y) * this.width + x0 + x;
        const rgb = this.partial && !this.painted[i] ? null : this.palette.get(this.ids[i]);
        const o = (y * w + x) * 4;
        if (rgb) {
          img.data[o] = rgb[0];
          img.data[o + 1] = rgb[1];
          img.data[o + 2] = rgb[2];
          img.data[o + 3] = 255;
        }
      }
    }
    ctx.putImageData(img, x0, y0);
  }

  /** Paint a disc of the brush class at image pixel (cx, cy); returns how many pixels changed. */
  paintDisc(cx, cy) {
    if (!this.ids) return 0;
    const r = this.brush.radius, id = this.brush.classId;
    const x0 = Math.max(0, Math.floor(cx - r)), x1 = Math.min(this.width - 1, Math.floor(cx + r));
    const y0 = Math.max(0, Math.floor(cy - r)), y1 = Math.min(this.height - 1, Math.floor(cy + r));
    let changed = 0;
    for (let y = y0; y <= y1; y++) {
      for (let x = x0; x <= x1; x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (dx * dx + dy * dy > r * r) continue;
        const i = y * this.width + x;
        this.painted[i] = 1;
        if (this.ids[i] !== id) {
          this.ids[i] = id;
          changed++;
        }
      }
    }
    this._render(x0, y0, x1 - x0 + 1, y1 - y0 + 1); // painted pixels show in partial mode even when unchanged
    return changed;
  }

  /** Paint along a segment so fast strokes leave no gaps. */
  paintLine(ax, ay, bx, by) {
    const steps = Math.max(1, Math.ceil(Math.hypot(bx - ax, by - ay) / Math.max(1, this.brush.radius / 2)));
    let changed = 0;
    for (let s = 1; s <= steps; s++) changed += this.paintDisc(ax + ((bx - ax) * s) / steps, ay + ((by - ay) * s) / steps);
    return changed;
  }

  setTool(tool) {
    if (tool !== "polygon") this.cancelPolygon();
    this.tool = tool;
    this.viewport.classList.toggle("painting", tool === "paint");
    this.viewport.classList.toggle("drawing", CLICK_TOOLS.includes(tool));
    this.edges.hidden = tool !== "segment";
  }

  /** A click (no drag) with a click tool at image pixel (x, y). */
  _toolClick(x, y) {
    this.onAction();
    if (this.tool === "polygon") this.addVertex(x, y);
    else if (this.tool === "region") this.fillRegion(x, y);
    else if (this.tool === "segment") this.fillSegment(x, y);
  }

  /** The brush outline under the pointer, at the brush's size on screen. */
  _moveCursor(ev) {
    this.cursor.hidden = !(this.tool === "paint" && this.ids);
    if (this.cursor.hidden) return;
    const r = this.viewport.getBoundingClientRect();
    const d = Math.max(4, 2 * this.brush.radius * this.zoom);
    Object.assign(this.cursor.style, { width: `${d}px`, height: `${d}px`,
      left: `${ev.clientX - r.left - d / 2}px`, top: `${ev.clientY - r.top - d / 2}px` });
  }

  // ---- input -------------------------------------------------------------------------------

  _bindInput() {
    const vp = this.viewport;
    vp.addEventListener("wheel", (ev) => {
      if (!this.width) return;
      ev.preventDefault();
      const r = vp.getBoundingClientRect();
      this.zoomAt(Math.exp(-ev.deltaY * 0.0015), ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });

    let drag = null;
    vp.addEventListener("pointerdown", (ev) => {
      if (!this.width || (ev.button !== 0 && ev.button !== 1)) return;
      // paint with the left button in paint mode; shift or the middle button always pans
      const painting = this.tool === "paint" && this.ids && ev.button === 0 && !ev.shiftKey;
      drag = { painting, shift: ev.shiftKey, x: ev.clientX, y: ev.clientY, tx: this.tx, ty: this.ty, moved: 0, target: ev.target,
        last: this.toImage(ev.clientX, ev.clientY) };
      vp.setPointerCapture(ev.pointerId);
      if (painting) {
        this.onAction();
        this._snapshot();
        this.paintDisc(...drag.last);
      }
      ev.preventDefault();
    });
    vp.addEventListener("pointermove", (ev) => {
      this._moveCursor(ev);
      if (!drag) return;
      drag.moved = Math.max(drag.moved, Math.hypot(ev.clientX - drag.x, ev.clientY - drag.y));
      if (drag.painting) {
        const here = this.toImage(ev.clientX, ev.clientY);
        this.paintLine(...drag.last, ...here);
        drag.last = here;
      } else {
        this.tx = drag.tx + ev.clientX - drag.x;
        this.ty = drag.ty + ev.clientY - drag.y;
        this._apply();
      }
    });
    const end = () => {
      if (drag?.painting) this.onEdit();
      if (drag && !drag.painting && drag.moved < CLICK_SLOP) {
        if (CLICK_TOOLS.includes(this.tool) && this.ids && !drag.shift) this._toolClick(...drag.last);
        else if (drag.target.classList?.contains("flag")) this.onSelect(drag.target.dataset.id);
      }
      drag = null;
    };
    vp.addEventListener("pointerup", end);
    vp.addEventListener("pointercancel", () => { drag = null; });
    vp.addEventListener("pointerleave", () => { this.cursor.hidden = true; });
  }
}
