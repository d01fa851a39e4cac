//! Pictures of synth scenes: a flat sky and ground, and each object drawn
//! from a few primitives (ellipses, rectangles, triangles, thick lines)
//! inside its box ([`Scene::object_box`]), with a 1-pixel darker outline.
//! Drawing is plain integer/float arithmetic (all targets, deterministic);
//! PNG encoding with the `image` crate is native-only.

use super::{Colour, Kind, Scene, HEIGHT, HORIZON, SKY_RGB, WIDTH};

/// An RGB picture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Picture {
    pub width: usize,
    pub height: usize,
    /// `[height, width, 3]` row-major RGB.
    pub rgb: Vec<u8>,
}

impl Picture {
    /// The colour at pixel `(x, y)`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let k = 3 * (y * self.width + x);
        [self.rgb[k], self.rgb[k + 1], self.rgb[k + 2]]
    }

    fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        let k = 3 * (y * self.width + x);
        self.rgb[k..k + 3].copy_from_slice(&c);
    }

    /// PNG file bytes (8-bit RGB); `path` only names the file in errors.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn png_bytes(&self, path: &std::path::Path) -> crate::error::Result<Vec<u8>> {
        use image::ImageEncoder;
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out)
            .write_image(&self.rgb, self.width as u32, self.height as u32, image::ColorType::Rgb8)
            .map_err(|e| crate::error::SgrafError::write(path, std::io::Error::other(e)))?;
        Ok(out)
    }
}

fn scale(c: [u8; 3], f: f32) -> [u8; 3] {
    c.map(|v| (v as f32 * f).round().clamp(0.0, 255.0) as u8)
}

fn luminance(c: [u8; 3]) -> f32 {
    0.299 * c[0] as f32 + 0.587 * c[1] as f32 + 0.114 * c[2] as f32
}

/// A darker (or, for very dark colours, lighter) shade for details.
fn shade(c: [u8; 3]) -> [u8; 3] {
    if luminance(c) < 50.0 {
        c.map(|v| v.saturating_add(60))
    } else {
        scale(c, 0.68)
    }
}

/// Outline colour of an object of colour `c`.
fn outline(c: [u8; 3]) -> [u8; 3] {
    scale(c, 0.4)
}

const EYE: [u8; 3] = [16, 16, 16];
const WHITE: [u8; 3] = [250, 250, 250];
const GLASS: [u8; 3] = [196, 224, 240];
const TRUNK: [u8; 3] = [104, 66, 30];
const ROOF: [u8; 3] = [78, 72, 84];
const DOOR: [u8; 3] = [86, 52, 28];
const WHEEL: [u8; 3] = [30, 30, 30];

/// A per-object layer: pixels of the object (`Some`) over a window of the picture.
struct Layer {
    x0: i32,
    y0: i32,
    w: usize,
    h: usize,
    px: Vec<Option<[u8; 3]>>, // [h, w]
    /// The object's box in picture pixels.
    b: [f32; 4],
}

impl Layer {
    fn new(b: [f32; 4]) -> Self {
        let x0 = b[0].floor() as i32 - 2;
        let y0 = b[1].floor() as i32 - 2;
        let w = (b[2].ceil() as i32 + 2 - x0).max(1) as usize;
        let h = (b[3].ceil() as i32 + 2 - y0).max(1) as usize;
        Layer { x0, y0, w, h, px: vec![None; w * h], b }
    }

    /// Unit box coordinates to picture pixels.
    fn at(&self, u: f32, v: f32) -> (f32, f32) {
        (self.b[0] + u * (self.b[2] - self.b[0]), self.b[1] + v * (self.b[3] - self.b[1]))
    }

    fn bw(&self) -> f32 {
        self.b[2] - self.b[0]
    }

    fn bh(&self) -> f32 {
        self.b[3] - self.b[1]
    }

    /// Sets every pixel whose centre satisfies `inside` to `c`.
    fn fill(&mut self, c: [u8; 3], inside: impl Fn(f32, f32) -> bool) {
        for y in 0..self.h {
            for x in 0..self.w {
                let (px, py) = ((self.x0 + x as i32) as f32 + 0.5, (self.y0 + y as i32) as f32 + 0.5);
                if inside(px, py) {
                    self.px[y * self.w + x] = Some(c);
                }
            }
        }
    }

    /// Ellipse centred at unit `(cu, cv)` with radii `ru`·width, `rv`·height.
    fn ellipse(&mut self, cu: f32, cv: f32, ru: f32, rv: f32, c: [u8; 3]) {
        let (cx, cy) = self.at(cu, cv);
        let (rx, ry) = ((ru * self.bw()).max(0.6), (rv * self.bh()).max(0.6));
        self.fill(c, |x, y| ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2) <= 1.0);
    }

    /// Circle centred at unit `(cu, cv)` with radius `r` pixels.
    fn dot(&mut self, cu: f32, cv: f32, r: f32, c: [u8; 3]) {
        let (cx, cy) = self.at(cu, cv);
        self.fill(c, |x, y| (x - cx).powi(2) + (y - cy).powi(2) <= r * r);
    }

    fn rect(&mut self, u0: f32, v0: f32, u1: f32, v1: f32, c: [u8; 3]) {
        let (x0, y0) = self.at(u0, v0);
        let (x1, y1) = self.at(u1, v1);
        self.fill(c, |x, y| x >= x0 && x < x1.max(x0 + 1.0) && y >= y0 && y < y1.max(y0 + 1.0));
    }

    fn triangle(&mut self, p: [(f32, f32); 3], c: [u8; 3]) {
        let q = p.map(|(u, v)| self.at(u, v));
        let edge = |a: (f32, f32), b: (f32, f32), x: f32, y: f32| (b.0 - a.0) * (y - a.1) - (b.1 - a.1) * (x - a.0);
        self.fill(c, |x, y| {
            let (e0, e1, e2) = (edge(q[0], q[1], x, y), edge(q[1], q[2], x, y), edge(q[2], q[0], x, y));
            (e0 >= 0.0 && e1 >= 0.0 && e2 >= 0.0) || (e0 <= 0.0 && e1 <= 0.0 && e2 <= 0.0)
        });
    }

    /// Segment between unit points, `t` pixels thick.
    fn line(&mut self, a: (f32, f32), b: (f32, f32), t: f32, c: [u8; 3]) {
        let (a, b) = (self.at(a.0, a.1), self.at(b.0, b.1));
        let (dx, dy) = (b.0 - a.0, b.1 - a.1);
        let len2 = (dx * dx + dy * dy).max(1e-6);
        let r2 = (t / 2.0).max(0.5).powi(2);
        self.fill(c, |x, y| {
            let s = (((x - a.0) * dx + (y - a.1) * dy) / len2).clamp(0.0, 1.0);
            let (px, py) = (a.0 + s * dx - x, a.1 + s * dy - y);
            px * px + py * py <= r2
        });
    }

    /// Paints the layer onto the picture, with a 1-pixel outline around it.
    fn composite(&self, pic: &mut Picture, edge: [u8; 3]) {
        let filled = |x: i32, y: i32| {
            x >= 0 && y >= 0 && (x as usize) < self.w && (y as usize) < self.h && {
                self.px[y as usize * self.w + x as usize].is_some()
            }
        };
        for y in 0..self.h as i32 {
            for x in 0..self.w as i32 {
                let (gx, gy) = (self.x0 + x, self.y0 + y);
                if gx < 0 || gy < 0 || gx as usize >= pic.width || gy as usize >= pic.height {
                    continue;
                }
                if let Some(c) = self.px[y as usize * self.w + x as usize] {
                    pic.set(gx as usize, gy as usize, c);
                } else if filled(x - 1, y) || filled(x + 1, y) || filled(x, y - 1) || filled(x, y + 1) {
                    pic.set(gx as usize, gy as usize, edge);
                }
            }
        }
    }
}

/// Draws one object of kind `kind` and colour `colour` into its layer.
fn draw_kind(l: &mut Layer, kind: Kind, colour: Colour) {
    let c = colour.rgb();
    let d = shade(c);
    let eye_r = (0.06 * l.bh()).max(0.9);
    match kind {
        Kind::Dog => {
            // Standing, facing right: tail, legs, body, head, floppy ear, snout.
            l.line((0.16, 0.42), (0.02, 0.14), (0.09 * l.bh()).max(1.5), c);
            for u in [0.2, 0.32, 0.56, 0.68] {
                l.rect(u, 0.5, u + 0.08, 1.0, c);
            }
            l.ellipse(0.44, 0.46, 0.32, 0.22, c);
            l.ellipse(0.8, 0.3, 0.14, 0.22, c);
            l.ellipse(0.94, 0.38, 0.07, 0.1, c);
            l.ellipse(0.72, 0.32, 0.05, 0.18, d);
            l.dot(0.84, 0.24, eye_r, EYE);
            l.dot(0.99, 0.34, eye_r, EYE);
        }
        Kind::Cat => {
            // Sitting, facing us: upright tail, body, head with pointed ears.
            l.line((0.7, 0.92), (0.97, 0.5), (0.1 * l.bw()).max(1.5), c);
            l.ellipse(0.45, 0.7, 0.32, 0.3, c);
            l.triangle([(0.22, 0.25), (0.26, 0.0), (0.45, 0.15)], c);
            l.triangle([(0.55, 0.15), (0.74, 0.0), (0.78, 0.25)], c);
            l.ellipse(0.5, 0.3, 0.27, 0.2, c);
            l.triangle([(0.29, 0.2), (0.29, 0.07), (0.38, 0.15)], d);
            l.triangle([(0.62, 0.15), (0.71, 0.07), (0.71, 0.2)], d);
            l.dot(0.4, 0.28, eye_r, EYE);
            l.dot(0.6, 0.28, eye_r, EYE);
        }
        Kind::Bird => {
            // Facing right: tail, body, head, beak, wing.
            l.triangle([(0.2, 0.5), (0.0, 0.3), (0.0, 0.75)], c);
            l.ellipse(0.45, 0.58, 0.3, 0.3, c);
            l.ellipse(0.76, 0.36, 0.15, 0.26, c);
            let beak = if matches!(colour, Colour::Orange | Colour::Yellow) { [90, 60, 20] } else { [240, 160, 30] };
            l.triangle([(0.88, 0.26), (1.0, 0.4), (0.88, 0.48)], beak);
            l.triangle([(0.25, 0.55), (0.5, 0.0), (0.62, 0.55)], d);
            l.dot(0.8, 0.3, eye_r, EYE);
        }
        Kind::Ball => {
            l.ellipse(0.5, 0.5, 0.5, 0.5, c);
            l.line((0.12, 0.62), (0.88, 0.38), (0.1 * l.bh()).max(1.0), d);
            let hi = if luminance(c) > 200.0 { [200, 200, 200] } else { WHITE };
            l.dot(0.33, 0.3, (0.1 * l.bh()).max(0.9), hi);
        }
        Kind::Car => {
            l.rect(0.22, 0.04, 0.7, 0.42, c);
            l.triangle([(0.7, 0.04), (0.88, 0.42), (0.7, 0.42)], c);
            l.rect(0.0, 0.38, 1.0, 0.8, c);
            l.rect(0.27, 0.12, 0.45, 0.38, GLASS);
            l.rect(0.5, 0.12, 0.68, 0.38, GLASS);
            l.triangle([(0.72, 0.12), (0.83, 0.38), (0.72, 0.38)], GLASS);
            let r = 0.2 * l.bh();
            l.dot(0.24, 0.8, r, WHEEL);
            l.dot(0.76, 0.8, r, WHEEL);
            l.dot(0.24, 0.8, r * 0.4, [150, 150, 150]);
            l.dot(0.76, 0.8, r * 0.4, [150, 150, 150]);
            l.rect(0.93, 0.46, 1.0, 0.56, [250, 230, 120]);
        }
        Kind::Tree => {
            l.rect(0.4, 0.5, 0.6, 1.0, TRUNK);
            l.ellipse(0.5, 0.36, 0.48, 0.34, c);
            l.ellipse(0.3, 0.48, 0.24, 0.16, c);
            l.ellipse(0.7, 0.48, 0.24, 0.16, c);
            l.ellipse(0.4, 0.25, 0.1, 0.06, d);
            l.ellipse(0.64, 0.4, 0.1, 0.06, d);
        }
        Kind::Fence => {
            l.rect(0.0, 0.28, 1.0, 0.4, d);
            l.rect(0.0, 0.64, 1.0, 0.76, d);
            for k in 0..5 {
                let u = 0.02 + 0.2 * k as f32;
                l.rect(u, 0.18, u + 0.14, 1.0, c);
                l.triangle([(u, 0.18), (u + 0.07, 0.0), (u + 0.14, 0.18)], c);
            }
        }
        Kind::House => {
            l.rect(0.08, 0.42, 0.92, 1.0, c);
            l.triangle([(0.0, 0.46), (0.5, 0.0), (1.0, 0.46)], ROOF);
            l.rect(0.42, 0.66, 0.58, 1.0, DOOR);
            l.rect(0.16, 0.56, 0.33, 0.74, GLASS);
            l.rect(0.67, 0.56, 0.84, 0.74, GLASS);
        }
        Kind::Kite => {
            l.line((0.5, 0.68), (0.35, 0.84), 1.0, [60, 60, 60]);
            l.line((0.35, 0.84), (0.6, 1.0), 1.0, [60, 60, 60]);
            l.triangle([(0.5, 0.0), (1.0, 0.3), (0.5, 0.7)], c);
            l.triangle([(0.5, 0.0), (0.0, 0.3), (0.5, 0.7)], d);
            l.line((0.5, 0.02), (0.5, 0.68), 1.0, outline(c));
            l.line((0.04, 0.3), (0.96, 0.3), 1.0, outline(c));
        }
    }
}

/// The picture of `scene`: [`WIDTH`]×[`HEIGHT`], sky above [`HORIZON`], then ground.
pub fn render(scene: &Scene) -> Picture {
    let mut pic = Picture { width: WIDTH, height: HEIGHT, rgb: vec![0; WIDTH * HEIGHT * 3] };
    let ground = scene.background.rgb();
    for y in 0..HEIGHT {
        let c = if y < HORIZON { SKY_RGB } else { ground };
        for x in 0..WIDTH {
            pic.set(x, y, c);
        }
    }
    for i in scene.draw_order() {
        let o = scene.objects[i];
        let mut layer = Layer::new(scene.object_box(i));
        draw_kind(&mut layer, o.kind, o.colour);
        layer.composite(&mut pic, outline(o.colour.rgb()));
    }
    pic
}

#[cfg(test)]
mod tests {
    use super::super::{random_scene, SynthRng};
    use super::*;

    #[test]
    fn objects_show_their_colour_inside_their_box() {
        for k in 0..200u64 {
            let scene = random_scene(&mut SynthRng::new(k));
            let pic = render(&scene);
            assert_eq!(pic.rgb.len(), WIDTH * HEIGHT * 3);
            for (i, o) in scene.objects.iter().enumerate() {
                // Objects drawn later can cover part of an earlier one, never all of it.
                let b = super::super::to_pixels(scene.object_box(i));
                let mut n = 0;
                for y in b[1]..b[3] {
                    for x in b[0]..b[2] {
                        n += (pic.pixel(x as usize, y as usize) == o.colour.rgb()) as usize;
                    }
                }
                let area = (b[2] - b[0]) as usize * (b[3] - b[1]) as usize;
                assert!(n * 10 > area, "object {i} {o:?}: {n} of {area} pixels in its colour, scene {scene:?}");
            }
        }
    }

    #[test]
    fn rendering_is_deterministic() {
        let scene = random_scene(&mut SynthRng::new(3));
        assert_eq!(render(&scene), render(&scene));
    }
}
