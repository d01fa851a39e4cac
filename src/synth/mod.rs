//! `synth`: a small, generated teaching dataset of simple scenes ("a brown dog
//! next to a white cat on the green grass"), in the SCAN precomp layout so that
//! every sgraf command reads it like Flickr30K (spec §2).
//!
//! It is a teaching dataset, not a benchmark: it lets a small SGRAF train in
//! minutes on a laptop CPU and shows what the model attends to.
//!
//! - **Scenes** ([`Scene`]): 2–4 objects on a background. Each object has a
//!   [`Kind`], a [`Colour`], a [`Size`], a column (left/middle/right) and a
//!   [`Place`] (on the ground, in the sky, in front of or on top of another
//!   object). Relations ([`Relation`]) follow from the layout.
//! - **Hard negatives**: about a third of the images of each split are
//!   minimally edited copies ([`Edit`]) of an earlier image of the same split:
//!   one colour, one kind or one size changed, or two objects swapped (one
//!   relation flipped). Everything else, jitter included, is copied.
//! - **Captions**: exactly five per image from a small grammar. Function words
//!   ("a", "the", "of", "with", "on", "is", "and", "next to") occur everywhere;
//!   colour and kind words carry the information. Every caption is true of its
//!   scene.
//! - **Region features** ([`Detector`]): a fixed, seeded stand-in for the
//!   bottom-up-attention detector: 36 regions per image, `[36, F]` float32,
//!   non-negative (ReLU of a sum of fixed random codes plus noise). Regions
//!   over an object encode its attributes, part regions its kind and colour,
//!   pair regions a relation, the rest background and clutter. The detector
//!   does not depend on the dataset seed, so a model trained on one seed reads
//!   the features of another.
//! - **Pictures** ([`render`]): 160×120 RGB drawings whose region boxes match
//!   the objects.
//!
//! Same [`SynthConfig`] → bit-identical output, on every target (the random
//! numbers use integer arithmetic and `+`/`*` only).

pub mod render;

use serde::Serialize;

use crate::data::tokenize::tokenize;
use crate::error::{Result, SgrafError};
use crate::model::init::Rng;

/// Bumped whenever the same config would generate different data.
pub const GENERATOR_VERSION: u32 = 1;
/// Picture width in pixels.
pub const WIDTH: usize = 160;
/// Picture height in pixels.
pub const HEIGHT: usize = 120;
/// First ground row: rows `0..HORIZON` are sky.
pub const HORIZON: usize = 52;
/// Regions per image (fixed by the model).
pub const N_REGIONS: usize = crate::data::N_REGIONS;
/// Captions per image (SCAN layout: caption `k` describes image `k / 5`).
pub const CAPTIONS_PER_IMAGE: usize = 5;
/// Default total number of images (1 000 train, 100 dev, 100 test).
pub const DEFAULT_IMAGES: usize = 1200;
/// Default region feature size.
pub const DEFAULT_FEATURE_SIZE: usize = 128;
/// Default dataset seed.
pub const DEFAULT_SEED: u64 = 1;
/// Share of images (after the first of each split) that are edited copies.
pub const EDIT_FRACTION: f32 = 0.35;
/// Seed of the fixed detector codes (independent of the dataset seed).
const DETECTOR_SEED: u64 = 0x5EED_DE7E_C70B_2021;
/// Split names in generation order.
pub const SPLITS: [&str; 3] = ["train", "dev", "test"];

// ---------------------------------------------------------------------------
// Random numbers: splitmix64, integer and +/* only, identical on every target.

/// Deterministic random numbers: the model's SplitMix64 ([`Rng`]) with the
/// draws a scene generator needs.
#[derive(Debug, Clone)]
pub struct SynthRng(Rng);

impl SynthRng {
    pub fn new(seed: u64) -> Self {
        SynthRng(Rng(seed))
    }

    /// A stream keyed by several numbers (split, image index, ...).
    pub fn keyed(keys: &[u64]) -> Self {
        let mut h = 0x243F_6A88_85A3_08D3u64;
        for &k in keys {
            h = Rng(h ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64();
        }
        SynthRng::new(h)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f32 {
        self.0.uniform()
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: i32, hi: i32) -> i32 {
        lo + self.below((hi - lo + 1) as usize) as i32
    }

    pub fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }

    /// Approximately standard normal (Irwin–Hall sum of four uniforms).
    pub fn normal(&mut self) -> f32 {
        let s = self.unit() + self.unit() + self.unit() + self.unit();
        (s - 2.0) * 1.732_050_8
    }

    pub fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

// ---------------------------------------------------------------------------
// Scene vocabulary: colours, kinds, sizes, places, backgrounds.

/// Object colours; each has one caption word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Brown,
    Black,
    White,
    Red,
    Green,
    Blue,
    Yellow,
    Grey,
    Orange,
    Pink,
    Purple,
}

impl Colour {
    pub const ALL: [Colour; 11] = [
        Colour::Brown,
        Colour::Black,
        Colour::White,
        Colour::Red,
        Colour::Green,
        Colour::Blue,
        Colour::Yellow,
        Colour::Grey,
        Colour::Orange,
        Colour::Pink,
        Colour::Purple,
    ];

    pub fn word(self) -> &'static str {
        match self {
            Colour::Brown => "brown",
            Colour::Black => "black",
            Colour::White => "white",
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Grey => "grey",
            Colour::Orange => "orange",
            Colour::Pink => "pink",
            Colour::Purple => "purple",
        }
    }

    pub fn from_word(word: &str) -> Option<Colour> {
        Colour::ALL.into_iter().find(|c| c.word() == word)
    }

    /// Drawing colour.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Brown => [139, 87, 42],
            Colour::Black => [28, 28, 28],
            Colour::White => [248, 248, 248],
            Colour::Red => [222, 36, 36],
            Colour::Green => [34, 150, 52],
            Colour::Blue => [36, 84, 222],
            Colour::Yellow => [246, 214, 28],
            Colour::Grey => [132, 132, 132],
            Colour::Orange => [248, 140, 20],
            Colour::Pink => [248, 150, 196],
            Colour::Purple => [136, 48, 172],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What an object is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Dog,
    Cat,
    Bird,
    Ball,
    Car,
    Tree,
    Fence,
    House,
    Kite,
}

impl Kind {
    pub const ALL: [Kind; 9] =
        [Kind::Dog, Kind::Cat, Kind::Bird, Kind::Ball, Kind::Car, Kind::Tree, Kind::Fence, Kind::House, Kind::Kite];

    /// Caption words; the first is the usual one, the others synonyms.
    pub fn words(self) -> &'static [&'static str] {
        match self {
            Kind::Dog => &["dog", "puppy"],
            Kind::Cat => &["cat", "kitten"],
            Kind::Bird => &["bird"],
            Kind::Ball => &["ball"],
            Kind::Car => &["car"],
            Kind::Tree => &["tree"],
            Kind::Fence => &["fence"],
            Kind::House => &["house"],
            Kind::Kite => &["kite"],
        }
    }

    pub fn from_word(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.words().contains(&word))
    }

    /// Width and height in pixels at [`Size::Big`] is ×1.15, [`Size::Small`] ×0.75.
    pub fn base_size(self) -> (f32, f32) {
        match self {
            Kind::Dog => (36.0, 24.0),
            Kind::Cat => (24.0, 26.0),
            Kind::Bird => (22.0, 15.0),
            Kind::Ball => (16.0, 16.0),
            Kind::Car => (40.0, 22.0),
            Kind::Tree => (32.0, 48.0),
            Kind::Fence => (40.0, 22.0),
            Kind::House => (38.0, 38.0),
            Kind::Kite => (22.0, 28.0),
        }
    }

    /// Stands on the ground as a scene's main object.
    pub fn on_ground(self) -> bool {
        !self.flies()
    }

    /// Lives in the sky.
    pub fn flies(self) -> bool {
        matches!(self, Kind::Bird | Kind::Kite)
    }

    /// Can have a small object in front of it.
    pub fn is_backdrop(self) -> bool {
        matches!(self, Kind::Car | Kind::Tree | Kind::Fence | Kind::House)
    }

    /// Can carry an object on top.
    pub fn is_support(self) -> bool {
        matches!(self, Kind::Car | Kind::Fence | Kind::House)
    }

    /// Can sit on top of a support.
    pub fn rides(self) -> bool {
        matches!(self, Kind::Bird | Kind::Cat)
    }

    /// Can stand in front of a backdrop.
    pub fn stands_in_front(self) -> bool {
        matches!(self, Kind::Dog | Kind::Cat | Kind::Ball)
    }

    /// Whether the kind may take `place` (given what depends on the object).
    fn fits(self, place: Place, has_front: bool, has_rider: bool) -> bool {
        let place_ok = match place {
            Place::Ground => self.on_ground(),
            Place::Sky => self.flies(),
            Place::Front { .. } => self.stands_in_front(),
            Place::On { .. } => self.rides(),
        };
        place_ok && (!has_front || self.is_backdrop()) && (!has_rider || self.is_support())
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Size relative to the kind's usual size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Big,
}

impl Size {
    pub const ALL: [Size; 2] = [Size::Small, Size::Big];

    pub fn words(self) -> &'static [&'static str] {
        match self {
            Size::Small => &["small", "little"],
            Size::Big => &["big", "large"],
        }
    }

    pub fn from_word(word: &str) -> Option<Size> {
        Size::ALL.into_iter().find(|s| s.words().contains(&word))
    }

    pub fn scale(self) -> f32 {
        match self {
            Size::Small => 0.75,
            Size::Big => 1.15,
        }
    }

    fn flip(self) -> Size {
        match self {
            Size::Small => Size::Big,
            Size::Big => Size::Small,
        }
    }
}

/// Where an object is, vertically; horizontally it is in `column` 0..3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Place {
    /// Standing on the ground (the row of main objects).
    Ground,
    /// In the sky (birds, kites).
    Sky,
    /// On the ground in front of object `of` (a backdrop), partly covering it.
    Front { of: usize },
    /// On top of object `of` (a support).
    On { of: usize },
}

impl Place {
    fn index(self) -> usize {
        match self {
            Place::Ground => 0,
            Place::Sky => 1,
            Place::Front { .. } => 2,
            Place::On { .. } => 3,
        }
    }

    /// The object this one depends on, if any.
    pub fn anchor(self) -> Option<usize> {
        match self {
            Place::Front { of } | Place::On { of } => Some(of),
            Place::Ground | Place::Sky => None,
        }
    }
}

/// The ground (the sky is always blue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Background {
    Grass,
    Sand,
    Snow,
}

impl Background {
    pub const ALL: [Background; 3] = [Background::Grass, Background::Sand, Background::Snow];

    /// Caption phrases naming the ground.
    pub fn phrases(self) -> &'static [&'static str] {
        match self {
            Background::Grass => &["on the green grass", "on the grass", "in a green field"],
            Background::Sand => &["on the sand", "on the beach"],
            Background::Snow => &["in the snow", "on the white snow"],
        }
    }

    /// Ground colour of the picture.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Background::Grass => [146, 200, 112],
            Background::Sand => [236, 214, 166],
            Background::Snow => [236, 242, 250],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Sky colour of every picture.
pub const SKY_RGB: [u8; 3] = [172, 212, 246];
/// Caption phrase for the sky.
pub const SKY_PHRASES: [&str; 2] = ["under a blue sky", "under the blue sky"];

/// Horizontal position names, by column.
pub const COLUMN_PHRASES: [&[&str]; 3] = [
    &["on the left", "on the left side of the picture", "on the left of the image"],
    &["in the middle", "in the middle of the picture", "in the center of the image"],
    &["on the right", "on the right side of the picture", "on the right of the image"],
];

/// Phrases for an object in the sky.
pub const SKY_PLACE_PHRASES: [&str; 3] = ["in the sky", "flying in the sky", "high in the blue sky"];

/// One object of a scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Object {
    pub kind: Kind,
    pub colour: Colour,
    pub size: Size,
    /// 0 left, 1 middle, 2 right (for `Front`/`On`, the anchor's column).
    pub column: usize,
    pub place: Place,
    /// Pixel offsets from the nominal position (copied by edits).
    pub jitter: [i8; 2],
}

/// A scene: a background and 2–4 objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scene {
    pub background: Background,
    pub objects: Vec<Object>,
}

/// How an edited copy differs from the scene it copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Edit {
    /// One object's colour changed.
    Colour { object: usize, from: Colour, to: Colour },
    /// One object's kind changed.
    Kind { object: usize, from: Kind, to: Kind },
    /// One object's size flipped.
    Size { object: usize, from: Size, to: Size },
    /// Two objects of the same row swapped columns (their left/right relation flips).
    Swap { a: usize, b: usize },
}

/// An image generated as a minimal edit of an earlier image of its split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EditOf {
    /// Index of the original image in the same split.
    pub image: usize,
    pub edit: Edit,
}

/// Spatial relation of one object to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    NextTo,
    LeftOf,
    RightOf,
    Above,
    Under,
    On,
    InFrontOf,
    Behind,
}

impl Relation {
    pub const ALL: [Relation; 8] = [
        Relation::NextTo,
        Relation::LeftOf,
        Relation::RightOf,
        Relation::Above,
        Relation::Under,
        Relation::On,
        Relation::InFrontOf,
        Relation::Behind,
    ];

    /// Caption phrases for "A <phrase> B".
    pub fn phrases(self) -> &'static [&'static str] {
        match self {
            Relation::NextTo => &["next to", "beside"],
            Relation::LeftOf => &["to the left of", "left of"],
            Relation::RightOf => &["to the right of", "right of"],
            Relation::Above => &["above", "over"],
            Relation::Under => &["under", "below"],
            Relation::On => &["on", "on top of", "sitting on"],
            Relation::InFrontOf => &["in front of"],
            Relation::Behind => &["behind"],
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Scene {
    /// Whether some object stands in front of, or rides on, object `i`.
    fn has_dependent(&self, i: usize, front: bool) -> bool {
        self.objects.iter().any(|o| match o.place {
            Place::Front { of } => front && of == i,
            Place::On { of } => !front && of == i,
            _ => false,
        })
    }

    fn row_is_sky(o: &Object) -> bool {
        o.place == Place::Sky
    }

    /// Every relation that holds of object `a` to object `b` (empty when
    /// none is named: e.g. a bird on the left and a dog on the right in
    /// different rows).
    pub fn relations(&self, a: usize, b: usize) -> Vec<Relation> {
        if a == b {
            return vec![];
        }
        let (oa, ob) = (&self.objects[a], &self.objects[b]);
        match (oa.place, ob.place) {
            (Place::On { of }, _) if of == b => return vec![Relation::On],
            (_, Place::On { of }) if of == a => return vec![Relation::Under],
            (Place::Front { of }, _) if of == b => return vec![Relation::InFrontOf],
            (_, Place::Front { of }) if of == a => return vec![Relation::Behind],
            _ => {}
        }
        let (sa, sb) = (Self::row_is_sky(oa), Self::row_is_sky(ob));
        if oa.column == ob.column {
            return match (sa, sb) {
                (true, false) => vec![Relation::Above],
                (false, true) => vec![Relation::Under],
                _ => vec![],
            };
        }
        if sa != sb {
            return vec![];
        }
        let side = if oa.column < ob.column { Relation::LeftOf } else { Relation::RightOf };
        if oa.column.abs_diff(ob.column) == 1 && !sa {
            vec![side, Relation::NextTo]
        } else {
            vec![side]
        }
    }

    /// The object's box `[x0, y0, x1, y1]` in picture pixels (floats).
    pub fn object_box(&self, i: usize) -> [f32; 4] {
        let o = &self.objects[i];
        let (bw, bh) = o.kind.base_size();
        let (w, h) = (bw * o.size.scale(), bh * o.size.scale());
        let col_w = WIDTH as f32 / 3.0;
        let (jx, jy) = (o.jitter[0] as f32, o.jitter[1] as f32);
        let mut cx = col_w * (o.column as f32 + 0.5) + jx;
        let bottom = match o.place {
            Place::Ground => 98.0 + jy,
            Place::Front { of } => {
                // Off-centre, so that the object behind stays visible.
                let s = self.object_box(of);
                let side = if o.jitter[0] >= 0 { 1.0 } else { -1.0 };
                cx = (s[0] + s[2]) / 2.0 + side * 0.28 * (s[2] - s[0]) + jx;
                116.0 + jy.min(2.0)
            }
            Place::Sky => 24.0 + jy + h / 2.0,
            Place::On { of } => {
                let s = self.object_box(of);
                cx = (s[0] + s[2]) / 2.0 + jx;
                s[1] + 1.0
            }
        };
        cx = cx.clamp(w / 2.0 + 1.0, WIDTH as f32 - w / 2.0 - 1.0);
        let bottom = bottom.clamp(h + 1.0, HEIGHT as f32 - 1.0);
        [cx - w / 2.0, bottom - h, cx + w / 2.0, bottom]
    }

    /// Drawing order: sky, ground (left to right), riders, objects in front.
    pub fn draw_order(&self) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.objects.len()).collect();
        order.sort_by_key(|&i| (self.objects[i].place.index_for_drawing(), self.objects[i].column));
        order
    }

    /// Whether two scenes differ by exactly one [`Edit`] (one colour, kind or
    /// size, or two same-row objects' columns swapped), and which.
    pub fn single_edit_to(&self, other: &Scene) -> Option<Edit> {
        if self.background != other.background || self.objects.len() != other.objects.len() {
            return None;
        }
        let differing: Vec<usize> = (0..self.objects.len()).filter(|&i| self.objects[i] != other.objects[i]).collect();
        match differing[..] {
            [i] => {
                let (a, b) = (self.objects[i], other.objects[i]);
                let same = |x: Object| Object { colour: a.colour, kind: a.kind, size: a.size, ..x };
                if same(b) != a {
                    return None;
                }
                match (a.colour != b.colour, a.kind != b.kind, a.size != b.size) {
                    (true, false, false) => Some(Edit::Colour { object: i, from: a.colour, to: b.colour }),
                    (false, true, false) => Some(Edit::Kind { object: i, from: a.kind, to: b.kind }),
                    (false, false, true) => Some(Edit::Size { object: i, from: a.size, to: b.size }),
                    _ => None,
                }
            }
            [i, j] => {
                let (a, b) = (self.objects[i], self.objects[j]);
                let swapped = other.objects[i] == Object { column: b.column, ..a }
                    && other.objects[j] == Object { column: a.column, ..b };
                (swapped && a.column != b.column).then_some(Edit::Swap { a: i, b: j })
            }
            _ => None,
        }
    }
}

impl Place {
    fn index_for_drawing(self) -> usize {
        match self {
            Place::Sky => 0,
            Place::Ground => 1,
            Place::On { .. } => 2,
            Place::Front { .. } => 3,
        }
    }
}

// ---------------------------------------------------------------------------
// Scene generation and minimal edits.

fn unique_colour(objects: &[Object], kind: Kind, rng: &mut SynthRng) -> Colour {
    loop {
        let c = rng.pick(&Colour::ALL);
        if !objects.iter().any(|o| o.kind == kind && o.colour == c) {
            return c;
        }
    }
}

fn new_object(objects: &[Object], kind: Kind, column: usize, place: Place, rng: &mut SynthRng) -> Object {
    let colour = unique_colour(objects, kind, rng);
    let size = rng.pick(&Size::ALL);
    let jitter = [rng.range(-3, 3) as i8, rng.range(-2, 2) as i8];
    Object { kind, colour, size, column, place, jitter }
}

/// A fresh random scene with 2–4 objects.
pub fn random_scene(rng: &mut SynthRng) -> Scene {
    let background = rng.pick(&Background::ALL);
    let n_target = 2 + rng.below(3);
    let mut columns = [0usize, 1, 2];
    rng.shuffle(&mut columns);
    let n_ground = 1 + rng.below(n_target.min(3));
    let ground_kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.on_ground()).collect();
    let sky_kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.flies()).collect();
    let front_kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.stands_in_front()).collect();
    let rider_kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.rides()).collect();

    let mut objects: Vec<Object> = Vec::with_capacity(4);
    for &column in &columns[..n_ground] {
        let kind = rng.pick(&ground_kinds);
        objects.push(new_object(&objects, kind, column, Place::Ground, rng));
    }
    let scene_of = |objects: &Vec<Object>| Scene { background, objects: objects.clone() };
    while objects.len() < n_target {
        let s = scene_of(&objects);
        // Free sky columns: no sky object and no rider there.
        let sky_cols: Vec<usize> = (0..3)
            .filter(|&c| !objects.iter().any(|o| o.column == c && matches!(o.place, Place::Sky | Place::On { .. })))
            .collect();
        let backdrops: Vec<usize> = (0..objects.len())
            .filter(|&i| {
                objects[i].place == Place::Ground && objects[i].kind.is_backdrop() && !s.has_dependent(i, true)
            })
            .collect();
        let supports: Vec<usize> = (0..objects.len())
            .filter(|&i| {
                let o = objects[i];
                o.place == Place::Ground
                    && o.kind.is_support()
                    && !s.has_dependent(i, false)
                    && !objects.iter().any(|p| p.place == Place::Sky && p.column == o.column)
            })
            .collect();
        let mut options = Vec::new();
        if !sky_cols.is_empty() {
            options.push(0);
        }
        if !backdrops.is_empty() {
            options.push(1);
        }
        if !supports.is_empty() {
            options.push(2);
        }
        if options.is_empty() {
            break;
        }
        let o = match rng.pick(&options) {
            0 => {
                let column = rng.pick(&sky_cols);
                new_object(&objects, rng.pick(&sky_kinds), column, Place::Sky, rng)
            }
            1 => {
                let of = rng.pick(&backdrops);
                new_object(&objects, rng.pick(&front_kinds), objects[of].column, Place::Front { of }, rng)
            }
            _ => {
                let of = rng.pick(&supports);
                new_object(&objects, rng.pick(&rider_kinds), objects[of].column, Place::On { of }, rng)
            }
        };
        objects.push(o);
    }
    Scene { background, objects }
}

/// A minimally edited copy of `scene` (one colour, kind or size, or a swap),
/// or `None` when the drawn kind of edit does not apply.
pub fn edit_scene(scene: &Scene, rng: &mut SynthRng) -> Option<(Scene, Edit)> {
    let n = scene.objects.len();
    let mut out = scene.clone();
    let draw = rng.unit();
    let i = rng.below(n);
    let o = scene.objects[i];
    let edit = if draw < 0.45 {
        let to = unique_colour(&scene.objects, o.kind, rng);
        out.objects[i].colour = to;
        Edit::Colour { object: i, from: o.colour, to }
    } else if draw < 0.70 {
        let pairs: Vec<(usize, usize)> = (0..n)
            .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
            .filter(|&(a, b)| {
                let (oa, ob) = (scene.objects[a], scene.objects[b]);
                let free = |k: usize| !scene.has_dependent(k, true) && !scene.has_dependent(k, false);
                oa.column != ob.column
                    && matches!((oa.place, ob.place), (Place::Ground, Place::Ground) | (Place::Sky, Place::Sky))
                    && free(a)
                    && free(b)
            })
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let (a, b) = rng.pick(&pairs);
        out.objects[a].column = scene.objects[b].column;
        out.objects[b].column = scene.objects[a].column;
        Edit::Swap { a, b }
    } else if draw < 0.85 {
        let (front, rider) = (scene.has_dependent(i, true), scene.has_dependent(i, false));
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|&k| {
                k != o.kind
                    && k.fits(o.place, front, rider)
                    && !scene.objects.iter().any(|p| p.kind == k && p.colour == o.colour)
            })
            .collect();
        if kinds.is_empty() {
            return None;
        }
        let to = rng.pick(&kinds);
        out.objects[i].kind = to;
        Edit::Kind { object: i, from: o.kind, to }
    } else {
        out.objects[i].size = o.size.flip();
        Edit::Size { object: i, from: o.size, to: o.size.flip() }
    };
    Some((out, edit))
}

// ---------------------------------------------------------------------------
// Captions: a small grammar. Every literal it uses is listed in LEXICON, from
// which the vocabulary is built (so the vocabulary does not depend on the seed).

/// Literal words and phrases of the caption templates (besides the colour,
/// kind, size, relation, place and background words).
const TEMPLATE_WORDS: &[&str] =
    &["a", "an", "the", "is", "there", "with", "it", "and", "of", "picture", "image", "photo", "scene", ",", "."];

/// Openings of the "a picture of ..." template.
const PICTURE_OF: [&str; 3] = ["a picture of", "an image of", "a photo of"];

/// Every string the grammar can emit (its tokens make up the vocabulary).
pub fn lexicon() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = TEMPLATE_WORDS.to_vec();
    out.extend(Colour::ALL.iter().map(|c| c.word()));
    out.extend(Kind::ALL.iter().flat_map(|k| k.words().iter().copied()));
    out.extend(Size::ALL.iter().flat_map(|s| s.words().iter().copied()));
    out.extend(Relation::ALL.iter().flat_map(|r| r.phrases().iter().copied()));
    out.extend(Background::ALL.iter().flat_map(|b| b.phrases().iter().copied()));
    out.extend(SKY_PHRASES);
    out.extend(COLUMN_PHRASES.iter().flat_map(|p| p.iter().copied()));
    out.extend(SKY_PLACE_PHRASES);
    out.extend(PICTURE_OF);
    out
}

/// The vocabulary words after the four specials: every token of the
/// lexicon, sorted (byte order).
pub fn vocab_words() -> Vec<String> {
    let mut words: Vec<String> = lexicon().iter().flat_map(|s| tokenize(s)).collect();
    words.sort();
    words.dedup();
    words
}

/// The vocabulary in the official JSON layout
/// (`{"idx2word": {"0": "<pad>", ...}, "word2idx": {...}, "idx": N}`), ids in order.
pub fn vocab_json(words: &[String]) -> String {
    let all: Vec<&str> = crate::data::vocab::SPECIALS.iter().copied().chain(words.iter().map(String::as_str)).collect();
    let q = |w: &str| serde_json::Value::String(w.to_string()).to_string();
    let idx2word: Vec<String> = all.iter().enumerate().map(|(i, w)| format!("\"{i}\": {}", q(w))).collect();
    let word2idx: Vec<String> = all.iter().enumerate().map(|(i, w)| format!("{}: {i}", q(w))).collect();
    format!(
        "{{\"idx2word\": {{{}}}, \"word2idx\": {{{}}}, \"idx\": {}}}\n",
        idx2word.join(", "),
        word2idx.join(", "),
        all.len()
    )
}

fn article(next: &str) -> &'static str {
    if next.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// A noun phrase for object `i`: `[a|an|the] [size] [colour] kind`. The colour
/// is always named when another object has the same kind.
fn noun_phrase(scene: &Scene, i: usize, definite: bool, rng: &mut SynthRng) -> String {
    let o = scene.objects[i];
    let shared_kind = scene.objects.iter().filter(|p| p.kind == o.kind).count() > 1;
    let mut words: Vec<&str> = Vec::with_capacity(4);
    if rng.chance(0.3) {
        words.push(rng.pick(o.size.words()));
    }
    if shared_kind || rng.chance(0.85) {
        words.push(o.colour.word());
    }
    let kind_words = o.kind.words();
    words.push(if rng.chance(0.75) { kind_words[0] } else { rng.pick(kind_words) });
    let det = if definite { "the" } else { article(words[0]) };
    format!("{det} {}", words.join(" "))
}

fn background_phrase(scene: &Scene, rng: &mut SynthRng) -> String {
    let ground = rng.pick(scene.background.phrases());
    if rng.chance(0.25) {
        format!("{ground} {}", rng.pick(&SKY_PHRASES))
    } else {
        ground.to_string()
    }
}

/// `" <background>"` with probability `p`, else empty.
fn maybe_background(scene: &Scene, p: f32, rng: &mut SynthRng) -> String {
    if rng.chance(p) {
        format!(" {}", background_phrase(scene, rng))
    } else {
        String::new()
    }
}

fn capitalise(s: String) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => s,
    }
}

/// All ordered pairs `(a, b)` with a named relation of `a` to `b`.
fn related_pairs(scene: &Scene) -> Vec<(usize, usize)> {
    let n = scene.objects.len();
    (0..n).flat_map(|a| (0..n).map(move |b| (a, b))).filter(|&(a, b)| !scene.relations(a, b).is_empty()).collect()
}

/// A phrase for one of the relations of `a` to `b` (which must have one).
fn relation_phrase(scene: &Scene, a: usize, b: usize, rng: &mut SynthRng) -> &'static str {
    let rels = scene.relations(a, b);
    let rel = rng.pick(&rels);
    rng.pick(rel.phrases())
}

fn position_phrase(o: &Object, rng: &mut SynthRng) -> &'static str {
    if o.place == Place::Sky {
        rng.pick(&SKY_PLACE_PHRASES)
    } else {
        rng.pick(COLUMN_PHRASES[o.column])
    }
}

/// One caption of `scene` (true of it), drawn from the grammar.
pub fn caption(scene: &Scene, rng: &mut SynthRng) -> String {
    let pairs = related_pairs(scene);
    let n = scene.objects.len();
    for _ in 0..16 {
        let template = rng.below(7);
        let text = match template {
            // "A brown dog is next to the white cat on the grass."
            0 | 1 if !pairs.is_empty() => {
                let (a, b) = rng.pick(&pairs);
                let rel = relation_phrase(scene, a, b, rng);
                let def_a = rng.chance(0.3);
                let np_a = noun_phrase(scene, a, def_a, rng);
                let np_b = noun_phrase(scene, b, rng.chance(0.4), rng);
                let bg = maybe_background(scene, 0.45, rng);
                if template == 0 || def_a {
                    format!("{np_a} is {rel} {np_b}{bg}.")
                } else {
                    format!("there is {np_a} {rel} {np_b}{bg}.")
                }
            }
            // "A red car with a yellow bird on top of it."
            2 if !pairs.is_empty() => {
                let (a, b) = rng.pick(&pairs);
                let rel = relation_phrase(scene, b, a, rng);
                let np_a = noun_phrase(scene, a, false, rng);
                let np_b = noun_phrase(scene, b, false, rng);
                let bg = maybe_background(scene, 0.3, rng);
                format!("{np_a} with {np_b} {rel} it{bg}.")
            }
            // "A picture of a grey cat, a blue ball and a tree on the beach."
            3 => {
                let mut ids: Vec<usize> = (0..n).collect();
                rng.shuffle(&mut ids);
                let k = if n > 2 && rng.chance(0.5) { 3 } else { 2 };
                let nps: Vec<String> = ids[..k].iter().map(|&i| noun_phrase(scene, i, false, rng)).collect();
                let list = if k == 3 {
                    format!("{}, {} and {}", nps[0], nps[1], nps[2])
                } else {
                    format!("{} and {}", nps[0], nps[1])
                };
                let bg = maybe_background(scene, 0.5, rng);
                format!("{} {list}{bg}.", rng.pick(&PICTURE_OF))
            }
            // "A small pink ball is on the left side of the picture."
            4 => {
                let i = rng.below(n);
                let np = noun_phrase(scene, i, false, rng);
                let pos = position_phrase(&scene.objects[i], rng);
                if rng.chance(0.5) {
                    format!("{np} is {pos}.")
                } else {
                    format!("there is {np} {pos}.")
                }
            }
            // "A scene on the sand with a black dog and a red house."
            5 => {
                let a = rng.below(n);
                let b = (a + 1 + rng.below(n - 1)) % n;
                let bg = background_phrase(scene, rng);
                let np_a = noun_phrase(scene, a, false, rng);
                let np_b = noun_phrase(scene, b, false, rng);
                format!("a scene {bg} with {np_a} and {np_b}.")
            }
            // "On the green grass, a dog is behind a brown ball."
            6 if !pairs.is_empty() => {
                let (a, b) = rng.pick(&pairs);
                let rel = relation_phrase(scene, a, b, rng);
                let bg = rng.pick(scene.background.phrases());
                let np_a = noun_phrase(scene, a, false, rng);
                let np_b = noun_phrase(scene, b, rng.chance(0.5), rng);
                format!("{bg}, {np_a} is {rel} {np_b}.")
            }
            _ => continue,
        };
        return capitalise(text);
    }
    // Fallback (a scene without relations and unlucky draws): a plain list.
    let np_a = noun_phrase(scene, 0, false, rng);
    let np_b = noun_phrase(scene, 1, false, rng);
    capitalise(format!("{} {np_a} and {np_b}.", rng.pick(&PICTURE_OF)))
}

/// Five distinct captions of `scene`.
pub fn captions(scene: &Scene, rng: &mut SynthRng) -> [String; CAPTIONS_PER_IMAGE] {
    let mut out: Vec<String> = Vec::with_capacity(CAPTIONS_PER_IMAGE);
    let mut tries = 0;
    while out.len() < CAPTIONS_PER_IMAGE {
        let c = caption(scene, rng);
        tries += 1;
        if !out.contains(&c) || tries > 200 {
            out.push(c);
        }
    }
    [out[0].clone(), out[1].clone(), out[2].clone(), out[3].clone(), out[4].clone()]
}

// ---------------------------------------------------------------------------
// The "detector": fixed random codes summed per region, plus noise, ReLU.

/// Code rows of the detector, in order.
const N_COLOUR: usize = Colour::ALL.len();
const N_KIND: usize = Kind::ALL.len();
const CODE_COLOUR: usize = 0;
const CODE_KIND: usize = CODE_COLOUR + N_COLOUR;
const CODE_SIZE: usize = CODE_KIND + N_KIND;
const CODE_COLUMN: usize = CODE_SIZE + 2;
const CODE_PLACE: usize = CODE_COLUMN + 3;
const CODE_PART: usize = CODE_PLACE + 4;
const CODE_RELATION: usize = CODE_PART + 2;
const CODE_GROUND: usize = CODE_RELATION + Relation::ALL.len();
const CODE_SKY: usize = CODE_GROUND + Background::ALL.len();
const CODE_CLUTTER: usize = CODE_SKY + 1;
const N_CODES: usize = CODE_CLUTTER + 1;

/// A fixed, seeded stand-in for a region detector: one random code per
/// attribute value; a region's feature is `relu(Σ weight·code + noise)`.
#[derive(Debug, Clone)]
pub struct Detector {
    pub feature_size: usize,
    codes: Vec<f32>, // [N_CODES, feature_size]
}

/// One detected region: its box and how its feature is made.
#[derive(Debug, Clone)]
struct RegionRecipe {
    bbox: [u16; 4],           // x0, y0, x1, y1 in pixels, x1/y1 exclusive
    terms: Vec<(usize, f32)>, // (code row, weight)
    noise: f32,               // standard deviation of the per-feature noise
}

fn to_pixels(b: [f32; 4]) -> [u16; 4] {
    let x0 = b[0].floor().clamp(0.0, WIDTH as f32 - 1.0);
    let y0 = b[1].floor().clamp(0.0, HEIGHT as f32 - 1.0);
    let x1 = b[2].ceil().clamp(x0 + 1.0, WIDTH as f32);
    let y1 = b[3].ceil().clamp(y0 + 1.0, HEIGHT as f32);
    [x0 as u16, y0 as u16, x1 as u16, y1 as u16]
}

/// Sub-box of `b` given in unit coordinates `[u0, v0, u1, v1]`.
fn sub_box(b: [f32; 4], u: [f32; 4]) -> [f32; 4] {
    let (w, h) = (b[2] - b[0], b[3] - b[1]);
    [b[0] + u[0] * w, b[1] + u[1] * h, b[0] + u[2] * w, b[1] + u[3] * h]
}

/// The two part boxes of a kind (a "head"/top part and a "body"/bottom part), unit coordinates.
fn part_boxes(kind: Kind) -> [[f32; 4]; 2] {
    match kind {
        Kind::Dog => [[0.62, 0.0, 1.0, 0.55], [0.1, 0.25, 0.8, 1.0]],
        Kind::Cat => [[0.15, 0.0, 0.85, 0.5], [0.1, 0.4, 1.0, 1.0]],
        Kind::Bird => [[0.6, 0.05, 1.0, 0.7], [0.0, 0.0, 0.7, 1.0]],
        Kind::Ball => [[0.0, 0.0, 1.0, 0.55], [0.0, 0.45, 1.0, 1.0]],
        Kind::Car => [[0.15, 0.0, 0.9, 0.45], [0.0, 0.35, 1.0, 1.0]],
        Kind::Tree => [[0.0, 0.0, 1.0, 0.7], [0.35, 0.5, 0.65, 1.0]],
        Kind::Fence => [[0.0, 0.0, 1.0, 0.5], [0.0, 0.45, 1.0, 1.0]],
        Kind::House => [[0.0, 0.0, 1.0, 0.47], [0.05, 0.4, 0.95, 1.0]],
        Kind::Kite => [[0.0, 0.0, 1.0, 0.72], [0.3, 0.6, 0.75, 1.0]],
    }
}

fn union(a: [f32; 4], b: [f32; 4]) -> [f32; 4] {
    [a[0].min(b[0]), a[1].min(b[1]), a[2].max(b[2]), a[3].max(b[3])]
}

impl Detector {
    /// The detector for feature size `feature_size`; the codes depend only on it.
    pub fn new(feature_size: usize) -> Self {
        let mut rng = SynthRng::keyed(&[DETECTOR_SEED, feature_size as u64]);
        let codes = (0..N_CODES * feature_size).map(|_| rng.normal()).collect();
        Detector { feature_size, codes }
    }

    fn code(&self, row: usize) -> &[f32] {
        &self.codes[row * self.feature_size..(row + 1) * self.feature_size]
    }

    /// The 36 regions of `scene`: object, part, pair, background and clutter
    /// regions, in a shuffled order (as a detector sorted by score would mix them).
    fn regions(&self, scene: &Scene, rng: &mut SynthRng) -> Vec<RegionRecipe> {
        let mut out = Vec::with_capacity(N_REGIONS);
        let ground = CODE_GROUND + scene.background.index();
        for (i, o) in scene.objects.iter().enumerate() {
            let b = scene.object_box(i);
            let attrs = [
                (CODE_COLOUR + o.colour.index(), 1.0),
                (CODE_KIND + o.kind.index(), 1.0),
                (CODE_SIZE + o.size as usize, 0.6),
                (CODE_COLUMN + o.column, 0.6),
                (CODE_PLACE + o.place.index(), 0.6),
            ];
            // The whole object, tightly.
            out.push(RegionRecipe { bbox: to_pixels(b), terms: attrs.to_vec(), noise: 0.4 });
            // A loose box: weaker attributes, some background.
            let (w, h) = (b[2] - b[0], b[3] - b[1]);
            let loose = [b[0] - 0.12 * w, b[1] - 0.12 * h, b[2] + 0.12 * w, b[3] + 0.12 * h];
            let bg = if o.place == Place::Sky { CODE_SKY } else { ground };
            let mut terms: Vec<(usize, f32)> = attrs.iter().map(|&(c, wt)| (c, 0.7 * wt)).collect();
            terms.push((bg, 0.5));
            out.push(RegionRecipe { bbox: to_pixels(loose), terms, noise: 0.6 });
            // Two parts: kind and colour, with a part code.
            for (p, u) in part_boxes(o.kind).into_iter().enumerate() {
                let terms = vec![
                    (CODE_KIND + o.kind.index(), 0.8),
                    (CODE_COLOUR + o.colour.index(), 0.8),
                    (CODE_PART + p, 0.7),
                ];
                out.push(RegionRecipe { bbox: to_pixels(sub_box(b, u)), terms, noise: 0.5 });
            }
        }
        // Pairs: the union box of two related objects encodes the relation.
        let n = scene.objects.len();
        for a in 0..n {
            for b in a + 1..n {
                let rels = scene.relations(a, b);
                let Some(&rel) = rels.first() else { continue };
                let (oa, ob) = (scene.objects[a], scene.objects[b]);
                let terms = vec![
                    (CODE_KIND + oa.kind.index(), 0.6),
                    (CODE_KIND + ob.kind.index(), 0.6),
                    (CODE_COLOUR + oa.colour.index(), 0.35),
                    (CODE_COLOUR + ob.colour.index(), 0.35),
                    (CODE_RELATION + rel.index(), 1.0),
                ];
                let bbox = to_pixels(union(scene.object_box(a), scene.object_box(b)));
                out.push(RegionRecipe { bbox, terms, noise: 0.5 });
            }
        }
        // Background: the sky and the ground.
        out.push(RegionRecipe { bbox: [0, 0, WIDTH as u16, HORIZON as u16], terms: vec![(CODE_SKY, 1.0)], noise: 0.4 });
        out.push(RegionRecipe {
            bbox: [0, HORIZON as u16, WIDTH as u16, HEIGHT as u16],
            terms: vec![(ground, 1.0)],
            noise: 0.4,
        });
        // Clutter: random boxes seeing mostly background.
        while out.len() < N_REGIONS {
            let (w, h) = (rng.range(8, 60) as f32, rng.range(8, 50) as f32);
            let x0 = rng.unit() * (WIDTH as f32 - w);
            let y0 = rng.unit() * (HEIGHT as f32 - h);
            let bg = if y0 + h / 2.0 < HORIZON as f32 { CODE_SKY } else { ground };
            out.push(RegionRecipe {
                bbox: to_pixels([x0, y0, x0 + w, y0 + h]),
                terms: vec![(bg, 0.6), (CODE_CLUTTER, 0.5)],
                noise: 0.7,
            });
        }
        out.truncate(N_REGIONS);
        rng.shuffle(&mut out);
        out
    }

    /// Region features `[36, F]` (row-major, appended to `features`) and boxes of `scene`.
    pub fn detect(&self, scene: &Scene, rng: &mut SynthRng, features: &mut Vec<f32>) -> [[u16; 4]; N_REGIONS] {
        let f = self.feature_size;
        let mut boxes = [[0u16; 4]; N_REGIONS];
        for (r, region) in self.regions(scene, rng).into_iter().enumerate() {
            boxes[r] = region.bbox;
            let start = features.len();
            features.resize(start + f, 0.0);
            let row = &mut features[start..];
            for &(code, w) in &region.terms {
                for (x, c) in row.iter_mut().zip(self.code(code)) {
                    *x += w * c;
                }
            }
            for x in row.iter_mut() {
                *x = (*x + region.noise * rng.normal()).max(0.0);
            }
        }
        boxes
    }
}

// ---------------------------------------------------------------------------
// The dataset.

/// Sizes and seed of a generated dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SynthConfig {
    pub n_train: usize,
    pub n_dev: usize,
    pub n_test: usize,
    pub seed: u64,
    pub feature_size: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig::with_images(DEFAULT_IMAGES, DEFAULT_SEED, DEFAULT_FEATURE_SIZE)
    }
}

impl SynthConfig {
    /// Splits `n_images` in total as train : dev : test = 10 : 1 : 1
    /// (dev = test = `max(2, round(n / 12))`, train the rest):
    /// 1 200 → 1 000 / 100 / 100, 60 → 50 / 5 / 5.
    pub fn with_images(n_images: usize, seed: u64, feature_size: usize) -> Self {
        let held_out = ((n_images + 6) / 12).max(2);
        let n_train = n_images.saturating_sub(2 * held_out);
        SynthConfig { n_train, n_dev: held_out, n_test: held_out, seed, feature_size }
    }

    pub fn n_images(&self) -> usize {
        self.n_train + self.n_dev + self.n_test
    }

    fn split_sizes(&self) -> [usize; 3] {
        [self.n_train, self.n_dev, self.n_test]
    }

    /// Refuses sizes that make no dataset.
    pub fn validate(&self) -> Result<()> {
        if self.feature_size == 0 {
            return Err(SgrafError::Input("synth: the feature size must be at least 1".into()));
        }
        if let Some(k) = self.split_sizes().iter().position(|&n| n < 2) {
            return Err(SgrafError::Input(format!(
                "synth: the {} split would have {} image(s); every split needs at least 2 \
                 (give at least 6 images in total)",
                SPLITS[k],
                self.split_sizes()[k]
            )));
        }
        Ok(())
    }
}

/// One generated split.
#[derive(Debug, Clone)]
pub struct SynthSplit {
    /// "train", "dev" or "test".
    pub name: &'static str,
    /// `[N]`
    pub scenes: Vec<Scene>,
    /// For each image, the image it is a minimal edit of, `[N]`.
    pub edits: Vec<Option<EditOf>>,
    /// Captions `5i..5i+4` describe image `i`, `[5N]`.
    pub captions: Vec<String>,
    /// Region features, `[N, 36, F]` row-major.
    pub features: Vec<f32>,
    /// Region boxes `[x0, y0, x1, y1]` in picture pixels (x1, y1 exclusive), `[N, 36]`.
    pub boxes: Vec<[[u16; 4]; N_REGIONS]>,
}

impl SynthSplit {
    pub fn n_images(&self) -> usize {
        self.scenes.len()
    }

    /// Pairs `(original, copy)` of images differing by one edit.
    pub fn hard_negative_pairs(&self) -> Vec<(usize, usize)> {
        self.edits.iter().enumerate().filter_map(|(i, e)| e.map(|e| (e.image, i))).collect()
    }
}

/// A generated dataset: train, dev and test splits and the vocabulary.
#[derive(Debug, Clone)]
pub struct SynthDataset {
    pub config: SynthConfig,
    /// train, dev, test
    pub splits: [SynthSplit; 3],
    /// Vocabulary words after the four specials (ids 4..).
    pub vocab_words: Vec<String>,
}

fn generate_split(config: &SynthConfig, split: usize, detector: &Detector) -> SynthSplit {
    let n = config.split_sizes()[split];
    let mut s = SynthSplit {
        name: SPLITS[split],
        scenes: Vec::with_capacity(n),
        edits: Vec::with_capacity(n),
        captions: Vec::with_capacity(n * CAPTIONS_PER_IMAGE),
        features: Vec::with_capacity(n * N_REGIONS * config.feature_size),
        boxes: Vec::with_capacity(n),
    };
    for i in 0..n {
        let mut rng = SynthRng::keyed(&[config.seed, GENERATOR_VERSION as u64, split as u64, i as u64]);
        // The second image of a split is always an edit (so every split has a
        // hard negative); later ones with probability EDIT_FRACTION.
        let want_edit = i == 1 || (i > 1 && rng.chance(EDIT_FRACTION));
        let mut made = None;
        if want_edit {
            let base = if i == 1 { 0 } else { rng.below(i) };
            for _ in 0..8 {
                if let Some((scene, edit)) = edit_scene(&s.scenes[base], &mut rng) {
                    made = Some((scene, Some(EditOf { image: base, edit })));
                    break;
                }
            }
        }
        let (scene, edit) = made.unwrap_or_else(|| (random_scene(&mut rng), None));
        s.captions.extend(captions(&scene, &mut rng));
        s.boxes.push(detector.detect(&scene, &mut rng, &mut s.features));
        s.scenes.push(scene);
        s.edits.push(edit);
    }
    s
}

/// Generates the whole dataset in memory (all targets).
pub fn generate(config: &SynthConfig) -> Result<SynthDataset> {
    config.validate()?;
    let detector = Detector::new(config.feature_size);
    let splits = [0, 1, 2].map(|k| generate_split(config, k, &detector));
    let vocab_words = vocab_words();
    Ok(SynthDataset { config: *config, splits, vocab_words })
}

/// `{split}_scenes.json` entry: the ground truth of one image, for viewers.
#[derive(Serialize)]
struct SceneRecord<'a> {
    background: Background,
    objects: &'a [Object],
    /// Object boxes `[x0, y0, x1, y1]`, `[n_objects]`.
    object_boxes: Vec<[u16; 4]>,
    edit_of: Option<EditOf>,
}

impl SynthDataset {
    /// The vocabulary JSON text (official layout).
    pub fn vocab_json(&self) -> String {
        vocab_json(&self.vocab_words)
    }

    /// `{split}_boxes.json`: `[[[x0, y0, x1, y1] × 36] × N]`.
    pub fn boxes_json(split: &SynthSplit) -> String {
        let images: Vec<String> = split
            .boxes
            .iter()
            .map(|b| {
                let rs: Vec<String> = b.iter().map(|r| format!("[{},{},{},{}]", r[0], r[1], r[2], r[3])).collect();
                format!("[{}]", rs.join(","))
            })
            .collect();
        format!("[\n{}\n]\n", images.join(",\n"))
    }

    /// `{split}_scenes.json`: the scenes, object boxes and edits.
    pub fn scenes_json(split: &SynthSplit) -> String {
        let records: Vec<SceneRecord> = split
            .scenes
            .iter()
            .zip(&split.edits)
            .map(|(s, e)| SceneRecord {
                background: s.background,
                objects: &s.objects,
                object_boxes: (0..s.objects.len()).map(|i| to_pixels(s.object_box(i))).collect(),
                edit_of: *e,
            })
            .collect();
        let lines: Vec<String> =
            records.iter().map(|r| serde_json::to_string(r).unwrap_or_else(|_| "null".into())).collect();
        format!("[\n{}\n]\n", lines.join(",\n"))
    }

    /// `synth.json`: generator, version, seed, sizes, split statistics and the command line.
    pub fn info_json(&self, command: &str) -> String {
        let splits: serde_json::Map<String, serde_json::Value> = self
            .splits
            .iter()
            .map(|s| {
                let v = serde_json::json!({
                    "images": s.n_images(),
                    "captions": s.captions.len(),
                    "edited_copies": s.edits.iter().filter(|e| e.is_some()).count(),
                });
                (s.name.to_string(), v)
            })
            .collect();
        let v = serde_json::json!({
            "generator": "sgraf synth",
            "version": GENERATOR_VERSION,
            "seed": self.config.seed,
            "feature_size": self.config.feature_size,
            "regions_per_image": N_REGIONS,
            "captions_per_image": CAPTIONS_PER_IMAGE,
            "picture_size": [WIDTH, HEIGHT],
            "vocab_size": self.vocab_words.len() + 4,
            "splits": splits,
            "command": command,
            "note": "a generated teaching dataset, not a benchmark",
        });
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    }

    /// Writes every file into `dir` (created if missing): `{split}_ims.npy`,
    /// `{split}_caps.txt`, `{split}_boxes.json`, `{split}_scenes.json`,
    /// `{split}_img/NNNNN.png`, `vocab.json` and `synth.json` (which records
    /// `command`). Returns the number of files written.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn write(&self, dir: &std::path::Path, command: &str) -> Result<usize> {
        let write = |name: &str, bytes: &[u8]| -> Result<()> {
            let path = dir.join(name);
            std::fs::write(&path, bytes).map_err(|e| SgrafError::write(&path, e))
        };
        std::fs::create_dir_all(dir).map_err(|e| SgrafError::write(dir, e))?;
        let mut files = 0;
        for s in &self.splits {
            let f = self.config.feature_size;
            crate::data::write_f32(
                dir.join(format!("{}_ims.npy", s.name)),
                &[s.n_images(), N_REGIONS, f],
                &s.features,
            )?;
            let mut caps = s.captions.join("\n");
            caps.push('\n');
            write(&format!("{}_caps.txt", s.name), caps.as_bytes())?;
            write(&format!("{}_boxes.json", s.name), Self::boxes_json(s).as_bytes())?;
            write(&format!("{}_scenes.json", s.name), Self::scenes_json(s).as_bytes())?;
            files += 4;
            let img_dir = dir.join(format!("{}_img", s.name));
            std::fs::create_dir_all(&img_dir).map_err(|e| SgrafError::write(&img_dir, e))?;
            for (i, scene) in s.scenes.iter().enumerate() {
                let path = img_dir.join(format!("{i:05}.png"));
                let png = render::render(scene).png_bytes(&path)?;
                std::fs::write(&path, png).map_err(|e| SgrafError::write(&path, e))?;
                files += 1;
            }
        }
        write("vocab.json", self.vocab_json().as_bytes())?;
        write("synth.json", self.info_json(command).as_bytes())?;
        Ok(files + 2)
    }
}

/// Generates a dataset and writes it into `dir` (see [`SynthDataset::write`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn write_dataset(dir: &std::path::Path, config: &SynthConfig, command: &str) -> Result<SynthDataset> {
    let data = generate(config)?;
    data.write(dir, command)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scenes(n: usize, seed: u64) -> Vec<Scene> {
        (0..n).map(|i| random_scene(&mut SynthRng::keyed(&[seed, i as u64]))).collect()
    }

    #[test]
    fn scenes_are_valid() {
        for s in scenes(2000, 7) {
            assert!((2..=4).contains(&s.objects.len()), "{s:?}");
            for (i, o) in s.objects.iter().enumerate() {
                assert!(o.column < 3);
                let (front, rider) = (s.has_dependent(i, true), s.has_dependent(i, false));
                assert!(o.kind.fits(o.place, front, rider), "{o:?} in {s:?}");
                if let Some(a) = o.place.anchor() {
                    assert_eq!(s.objects[a].place, Place::Ground);
                    assert_eq!(s.objects[a].column, o.column);
                }
                let b = s.object_box(i);
                assert!(b[0] >= 0.0 && b[1] >= 0.0 && b[2] <= WIDTH as f32 && b[3] <= HEIGHT as f32, "{b:?}");
                for (j, p) in s.objects.iter().enumerate() {
                    if j != i {
                        assert!(p.kind != o.kind || p.colour != o.colour, "duplicate object in {s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn same_row_objects_do_not_overlap() {
        for s in scenes(2000, 8) {
            for i in 0..s.objects.len() {
                for j in i + 1..s.objects.len() {
                    let (a, b) = (s.objects[i], s.objects[j]);
                    let row = |o: Object| matches!(o.place, Place::Ground) as u8 + 2 * (o.place == Place::Sky) as u8;
                    if row(a) == row(b) && row(a) > 0 {
                        let (ba, bb) = (s.object_box(i), s.object_box(j));
                        assert!(ba[2] <= bb[0] || bb[2] <= ba[0], "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn relations_are_consistent() {
        let inverse = |r: Relation| match r {
            Relation::NextTo => Relation::NextTo,
            Relation::LeftOf => Relation::RightOf,
            Relation::RightOf => Relation::LeftOf,
            Relation::Above => Relation::Under,
            Relation::Under => Relation::Above,
            Relation::On => Relation::Under,
            Relation::InFrontOf => Relation::Behind,
            Relation::Behind => Relation::InFrontOf,
        };
        for s in scenes(500, 9) {
            for a in 0..s.objects.len() {
                for b in 0..s.objects.len() {
                    for r in s.relations(a, b) {
                        let back = s.relations(b, a);
                        let ok = back.contains(&inverse(r)) || (r == Relation::Under && back == [Relation::On]);
                        assert!(ok, "{r:?} of {a} to {b} but {back:?} back in {s:?}");
                        let (ba, bb) = (s.object_box(a), s.object_box(b));
                        let (ca, cb) = ((ba[0] + ba[2]) / 2.0, (bb[0] + bb[2]) / 2.0);
                        match r {
                            Relation::LeftOf => assert!(ca < cb),
                            Relation::RightOf => assert!(ca > cb),
                            Relation::Above | Relation::On => assert!(ba[3] <= bb[1] + 1.0, "{s:?}"),
                            Relation::Under => assert!(bb[3] <= ba[1] + 1.0, "{s:?}"),
                            Relation::InFrontOf => assert!(ba[3] > bb[3]),
                            Relation::Behind => assert!(ba[3] < bb[3]),
                            Relation::NextTo => {}
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn edits_are_single_and_valid() {
        let mut rng = SynthRng::new(11);
        let mut kinds = [0usize; 4];
        for s in scenes(1000, 10) {
            if let Some((e, edit)) = edit_scene(&s, &mut rng) {
                assert_eq!(s.single_edit_to(&e), Some(edit), "{s:?} -> {e:?}");
                kinds[match edit {
                    Edit::Colour { .. } => 0,
                    Edit::Swap { .. } => 1,
                    Edit::Kind { .. } => 2,
                    Edit::Size { .. } => 3,
                }] += 1;
                for (i, o) in e.objects.iter().enumerate() {
                    assert!(o.kind.fits(o.place, e.has_dependent(i, true), e.has_dependent(i, false)));
                }
            }
        }
        assert!(kinds.iter().all(|&k| k > 30), "edit kinds {kinds:?}");
        let s = &scenes(1, 3)[0];
        assert_eq!(s.single_edit_to(s), None);
    }

    #[test]
    fn lexicon_covers_every_caption() {
        let vocab: std::collections::HashSet<String> = vocab_words().into_iter().collect();
        let mut rng = SynthRng::new(5);
        for s in scenes(500, 12) {
            for c in captions(&s, &mut rng) {
                for t in tokenize(&c) {
                    assert!(vocab.contains(&t), "token {t:?} of {c:?} not in the vocabulary");
                }
            }
        }
    }

    #[test]
    fn vocab_json_loads() {
        let words = vocab_words();
        let v = crate::data::Vocab::from_json_str(&vocab_json(&words)).unwrap();
        assert_eq!(v.len(), words.len() + 4);
        assert_eq!(v.id("<unk>"), 3);
        assert_eq!(v.word(4), Some(words[0].as_str()));
    }

    #[test]
    fn features_are_non_negative_and_informative() {
        let d = Detector::new(64);
        let s = &scenes(1, 4)[0];
        let mut f1 = Vec::new();
        let b = d.detect(s, &mut SynthRng::new(1), &mut f1);
        assert_eq!(f1.len(), 36 * 64);
        assert!(f1.iter().all(|&x| x >= 0.0 && x.is_finite()));
        assert!(f1.iter().filter(|&&x| x > 0.0).count() > 36 * 64 / 4);
        for r in b {
            assert!(r[0] < r[2] && r[1] < r[3] && r[2] as usize <= WIDTH && r[3] as usize <= HEIGHT, "{r:?}");
        }
        let mut f2 = Vec::new();
        d.detect(s, &mut SynthRng::new(1), &mut f2);
        assert_eq!(f1, f2);
    }

    #[test]
    fn split_sizes() {
        let c = SynthConfig::with_images(1200, 0, 128);
        assert_eq!((c.n_train, c.n_dev, c.n_test), (1000, 100, 100));
        let c = SynthConfig::with_images(60, 0, 128);
        assert_eq!((c.n_train, c.n_dev, c.n_test), (50, 5, 5));
        assert!(SynthConfig::with_images(5, 0, 128).validate().is_err());
        assert!(SynthConfig::with_images(6, 0, 128).validate().is_ok());
        assert!(SynthConfig::with_images(60, 0, 0).validate().is_err());
    }
}
