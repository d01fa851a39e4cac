//! `sgraf synth`, the generated teaching dataset: determinism, the files the
//! loaders read, captions true of their scenes, hard negatives, boxes and
//! pictures; and the command line end to end.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use sgraf::data::{encode, tokenize, Split, Vocab, UNK};
use sgraf::synth::{self, Background, Colour, Kind, Scene, Size, SynthConfig, SynthDataset, HEIGHT, WIDTH};

fn sgraf() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sgraf"));
    c.env("XDG_RUNTIME_DIR", "/tmp");
    c
}

/// Every file under `dir` (relative path → bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).expect("prefix").display().to_string();
                out.insert(rel, std::fs::read(&p).expect("read"));
            }
        }
    }
    out
}

fn small() -> SynthDataset {
    synth::generate(&SynthConfig::with_images(240, 5, 32)).expect("generate")
}

#[test]
fn same_seed_same_bytes_through_the_binary() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [a.path(), b.path()] {
        let out = sgraf()
            .args(["synth", "--out", dir.to_str().unwrap(), "--images", "60", "--seed", "3"])
            .output()
            .expect("run sgraf synth");
        assert!(out.status.success(), "sgraf synth failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stdout.contains("50 images") && stdout.contains("wrote"), "{stdout}");
    }
    let (fa, fb) = (files(a.path()), files(b.path()));
    let mut expected: Vec<String> = vec!["vocab.json".into(), "synth.json".into()];
    for (split, n) in [("train", 50), ("dev", 5), ("test", 5)] {
        for suffix in ["ims.npy", "caps.txt", "boxes.json", "scenes.json"] {
            expected.push(format!("{split}_{suffix}"));
        }
        for i in 0..n {
            expected.push(format!("{split}_img/{i:05}.png"));
        }
    }
    expected.sort();
    assert_eq!(fa.keys().cloned().collect::<Vec<_>>(), expected, "files written");
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        if name == "synth.json" {
            continue; // records the command line, which names the output folder
        }
        assert!(bytes == &fb[name], "{name} differs between two runs with the same seed");
    }
    let info: serde_json::Value = serde_json::from_slice(&fa["synth.json"]).unwrap();
    assert_eq!(info["seed"], 3);
    assert_eq!(info["version"], synth::GENERATOR_VERSION);
    assert_eq!(info["feature_size"], 128);
    assert_eq!(info["splits"]["train"]["images"], 50);
    assert!(info["command"].as_str().unwrap().contains("--seed 3"), "{info}");

    // The loaders read it.
    let vocab = Vocab::load(a.path().join("vocab.json")).expect("vocab loads");
    for (split, n) in [("train", 50), ("dev", 5), ("test", 5)] {
        let s = Split::load(a.path(), split).expect("split loads");
        assert_eq!((s.n_images, s.n_regions, s.img_dim, s.im_div), (n, 36, 128, 5));
        assert_eq!(s.n_captions(), 5 * n);
        s.check_finite().unwrap();
        assert!(s.images.data().iter().all(|&v| v >= 0.0), "features are ReLU'd");
        for c in &s.captions {
            assert!(!encode(c, &vocab).contains(&UNK), "caption {c:?} has an out-of-vocabulary token");
        }
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let out = sgraf().args(["synth", "--out", dir.path().to_str().unwrap(), "--images", "4"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("at least 6 images") && !err.contains("panicked"), "{err}");

    let file = dir.path().join("a_file");
    std::fs::write(&file, b"x").unwrap();
    let out = sgraf().args(["synth", "--out", file.to_str().unwrap(), "--images", "12"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("a_file") && !err.contains("panicked"), "{err}");
}

#[test]
fn same_seed_same_data_different_seed_different_data() {
    let c = SynthConfig::with_images(60, 9, 16);
    let (a, b) = (synth::generate(&c).unwrap(), synth::generate(&c).unwrap());
    let d = synth::generate(&SynthConfig { seed: 10, ..c }).unwrap();
    for k in 0..3 {
        assert_eq!(a.splits[k].features, b.splits[k].features);
        assert_eq!(a.splits[k].captions, b.splits[k].captions);
        assert_eq!(a.splits[k].scenes, b.splits[k].scenes);
        assert_ne!(a.splits[k].features, d.splits[k].features);
        assert_ne!(a.splits[k].captions, d.splits[k].captions);
    }
    for (sa, sb) in a.splits[2].scenes.iter().zip(&b.splits[2].scenes) {
        assert_eq!(synth::render::render(sa), synth::render::render(sb));
    }
    // The vocabulary and the detector do not depend on the seed.
    assert_eq!(a.vocab_json(), d.vocab_json());
}

/// Checks the words of one caption against its scene: each colour word is
/// followed by a kind the scene has in that colour (or names the background:
/// "green grass", "white snow", "blue sky"); each size word by an object of
/// that size; each kind word names an object of the scene.
fn check_caption(caption: &str, scene: &Scene) -> Result<(), String> {
    let t = tokenize(caption);
    let has = |pred: &dyn Fn(&synth::Object) -> bool| scene.objects.iter().any(pred);
    for (i, w) in t.iter().enumerate() {
        let next = t.get(i + 1).map(String::as_str).unwrap_or("");
        if let Some(kind) = Kind::from_word(w) {
            if !has(&|o| o.kind == kind) {
                return Err(format!("names a {w} but the scene has none"));
            }
        }
        if let Some(colour) = Colour::from_word(w) {
            match next {
                "grass" | "field" => {
                    if colour != Colour::Green || scene.background != Background::Grass {
                        return Err(format!("{w} {next} on {:?}", scene.background));
                    }
                }
                "snow" => {
                    if colour != Colour::White || scene.background != Background::Snow {
                        return Err(format!("{w} {next} on {:?}", scene.background));
                    }
                }
                "sky" if colour == Colour::Blue => {}
                _ => {
                    let kind = Kind::from_word(next).ok_or(format!("colour {w} not followed by a kind"))?;
                    if !has(&|o| o.kind == kind && o.colour == colour) {
                        return Err(format!("no {w} {next} in the scene"));
                    }
                }
            }
        }
        if let Some(size) = Size::from_word(w) {
            let (colour, kind_word) = match Colour::from_word(next) {
                Some(c) => (Some(c), t.get(i + 2).map(String::as_str).unwrap_or("")),
                None => (None, next),
            };
            let kind = Kind::from_word(kind_word).ok_or(format!("size {w} not followed by a kind"))?;
            if !has(&|o| o.kind == kind && o.size == size && colour.is_none_or(|c| o.colour == c)) {
                return Err(format!("no {w} {kind_word} in the scene"));
            }
        }
    }
    Ok(())
}

#[test]
fn captions_are_true_of_their_scene() {
    let data = small();
    let mut checked = 0;
    for s in &data.splits {
        assert_eq!(s.captions.len(), 5 * s.n_images());
        for (k, c) in s.captions.iter().enumerate() {
            let scene = &s.scenes[k / 5];
            if let Err(e) = check_caption(c, scene) {
                panic!("{} caption {k} {c:?}: {e}\nscene {scene:?}", s.name);
            }
            checked += 1;
        }
        // Five distinct captions per image.
        for (i, five) in s.captions.chunks(5).enumerate() {
            let distinct: std::collections::HashSet<&String> = five.iter().collect();
            assert_eq!(distinct.len(), 5, "{} image {i}: {five:?}", s.name);
        }
    }
    assert_eq!(checked, 5 * 240);
    // The checker does catch a false caption.
    let scene = &data.splits[0].scenes[0];
    let absent = Colour::ALL.into_iter().find(|c| !scene.objects.iter().any(|o| o.colour == *c)).unwrap();
    let wrong = format!("A {} {} is on the left.", absent.word(), scene.objects[0].kind.words()[0]);
    assert!(check_caption(&wrong, scene).is_err(), "{wrong}");
}

#[test]
fn function_words_are_everywhere_colours_and_kinds_carry_the_information() {
    let data = small();
    let caps: Vec<Vec<String>> = data.splits.iter().flat_map(|s| s.captions.iter().map(|c| tokenize(c))).collect();
    let share = |pred: &dyn Fn(&[String]) -> bool| caps.iter().filter(|t| pred(t)).count() as f64 / caps.len() as f64;
    let with = |w: &'static str| move |t: &[String]| t.iter().any(|x| x == w);
    let article = share(&|t| t.iter().any(|x| x == "a" || x == "an"));
    let the = share(&with("the"));
    let is = share(&with("is"));
    let of = share(&with("of"));
    let on = share(&with("on"));
    let with_ = share(&with("with"));
    let and = share(&with("and"));
    let period = share(&with("."));
    let colour = share(&|t| t.iter().any(|x| Colour::from_word(x).is_some()));
    let kind = share(&|t| t.iter().any(|x| Kind::from_word(x).is_some()));
    eprintln!(
        "share of captions with: a/an {article:.2}, the {the:.2}, is {is:.2}, of {of:.2}, on {on:.2}, \
         with {with_:.2}, and {and:.2}, colour {colour:.2}, kind {kind:.2}"
    );
    assert!(article > 0.9 && the > 0.5 && is > 0.3 && of > 0.2 && on > 0.3, "function words too rare");
    assert!(with_ > 0.1 && and > 0.15 && period == 1.0);
    assert!(colour > 0.95 && kind == 1.0);
    // "next to" occurs as a phrase.
    assert!(caps.iter().any(|t| t.windows(2).any(|w| w[0] == "next" && w[1] == "to")));
}

/// Attribute differences between two scenes: (changed colours/kinds/sizes,
/// objects whose column changed) — counted independently of the generator.
fn differences(a: &Scene, b: &Scene) -> Option<(usize, Vec<usize>)> {
    if a.background != b.background || a.objects.len() != b.objects.len() {
        return None;
    }
    let mut attrs = 0;
    let mut moved = Vec::new();
    for (i, (x, y)) in a.objects.iter().zip(&b.objects).enumerate() {
        attrs += (x.colour != y.colour) as usize + (x.kind != y.kind) as usize + (x.size != y.size) as usize;
        if x.column != y.column {
            moved.push(i);
        }
        if x.place != y.place || x.jitter != y.jitter {
            return None;
        }
    }
    Some((attrs, moved))
}

#[test]
fn hard_negatives_differ_in_exactly_one_attribute() {
    let data = small();
    for s in &data.splits {
        let pairs = s.hard_negative_pairs();
        assert!(pairs.len() * 5 >= s.n_images(), "{}: only {} edited copies of {}", s.name, pairs.len(), s.n_images());
        for &(orig, copy) in &pairs {
            assert!(orig < copy);
            let (a, b) = (&s.scenes[orig], &s.scenes[copy]);
            let (attrs, moved) = differences(a, b).unwrap_or_else(|| panic!("{orig} vs {copy}: {a:?} {b:?}"));
            match (attrs, &moved[..]) {
                (1, []) => {}
                (0, &[i, j]) => {
                    // Swap: two objects of the same row exchanged columns, one left/right relation flips.
                    assert_eq!((a.objects[i].column, a.objects[j].column), (b.objects[j].column, b.objects[i].column));
                    assert_ne!(a.relations(i, j), b.relations(i, j));
                }
                _ => panic!("{orig} vs {copy} differ by {attrs} attributes and moves {moved:?}"),
            }
            assert_eq!(a.single_edit_to(b), s.edits[copy].map(|e| e.edit));
            // The pictures and features differ too.
            assert_ne!(synth::render::render(a), synth::render::render(b));
        }
    }
    // In the test split at the default size, every kind of edit occurs.
    let test = &synth::generate(&SynthConfig::default()).unwrap().splits[2];
    let kinds: std::collections::HashSet<&str> = test
        .edits
        .iter()
        .flatten()
        .map(|e| match e.edit {
            synth::Edit::Colour { .. } => "colour",
            synth::Edit::Kind { .. } => "kind",
            synth::Edit::Size { .. } => "size",
            synth::Edit::Swap { .. } => "swap",
        })
        .collect();
    assert_eq!(kinds.len(), 4, "{kinds:?}");
}

#[test]
fn boxes_and_pictures_match_the_scenes() {
    let dir = tempfile::tempdir().unwrap();
    let data = synth::write_dataset(dir.path(), &SynthConfig::with_images(24, 2, 8), "test").unwrap();
    for s in &data.splits {
        let text = std::fs::read_to_string(dir.path().join(format!("{}_boxes.json", s.name))).unwrap();
        let boxes: Vec<Vec<[u32; 4]>> = serde_json::from_str(&text).expect("boxes.json is [[[x0,y0,x1,y1] x 36] x N]");
        assert_eq!(boxes.len(), s.n_images());
        for (i, image) in boxes.iter().enumerate() {
            assert_eq!(image.len(), 36);
            for b in image {
                assert!(b[0] < b[2] && b[1] < b[3] && b[2] as usize <= WIDTH && b[3] as usize <= HEIGHT, "{b:?}");
            }
            let png = std::fs::read(dir.path().join(format!("{}_img/{i:05}.png", s.name))).unwrap();
            let pic = image::load_from_memory(&png).expect("a PNG").to_rgb8();
            assert_eq!((pic.width() as usize, pic.height() as usize), (WIDTH, HEIGHT));
            assert_eq!(pic.into_raw(), synth::render::render(&s.scenes[i]).rgb, "PNG = rendered picture");
            // Each object has a region box that is exactly its box.
            let scene = &s.scenes[i];
            for k in 0..scene.objects.len() {
                let ob = scene.object_box(k);
                let found = image.iter().any(|b| {
                    (b[0] as f32 - ob[0].floor()).abs() < 1.0
                        && (b[2] as f32 - ob[2].ceil()).abs() < 1.0
                        && (b[1] as f32 - ob[1].floor()).abs() < 1.0
                        && (b[3] as f32 - ob[3].ceil()).abs() < 1.0
                });
                assert!(found, "{} image {i}: no region over object {k} {ob:?}", s.name);
            }
        }
        let scenes: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(format!("{}_scenes.json", s.name))).unwrap())
                .unwrap();
        assert_eq!(scenes.as_array().unwrap().len(), s.n_images());
    }
}
