//! Parses and validates every `shaders/**/*.wgsl` with naga (WGSL front end,
//! default validation flags and capabilities). Fails when no shader is
//! found, so a moved folder cannot make this test pass vacuously.

use std::path::{Path, PathBuf};

fn wgsl_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            wgsl_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "wgsl") {
            out.push(path);
        }
    }
}

#[test]
fn every_shader_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files = Vec::new();
    wgsl_files(&dir, &mut files);
    files.sort();
    assert!(!files.is_empty(), "no .wgsl file found under {}", dir.display());
    let mut failures = Vec::new();
    for path in &files {
        let name = path.display().to_string();
        let source = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {name}: {e}"));
        let module = match naga::front::wgsl::parse_str(&source) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{name}: parse error:\n{}", e.emit_to_string_with_path(&source, &name)));
                continue;
            }
        };
        let mut validator =
            naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::default());
        if let Err(e) = validator.validate(&module) {
            failures.push(format!("{name}: validation error:\n{}", e.emit_to_string_with_path(&source, &name)));
        }
    }
    assert!(failures.is_empty(), "{} of {} shaders failed:\n{}", failures.len(), files.len(), failures.join("\n"));
}
