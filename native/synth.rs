//! `sgraf synth`: writes the built-in teaching dataset (see `sgraf::synth`).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;

use sgraf::synth::{self, SynthConfig};

#[derive(Args)]
pub struct SynthArgs {
    /// Output folder (created if missing; existing files of the same names are overwritten).
    #[arg(long)]
    pub out: PathBuf,
    /// Images in total, split train : dev : test = 10 : 1 : 1 (dev = test = max(2, round(N/12)),
    /// train the rest): 1200 gives 1000 / 100 / 100. Five captions per image.
    #[arg(long, default_value_t = synth::DEFAULT_IMAGES)]
    pub images: usize,
    /// Dataset seed (the same seed gives bit-identical files).
    #[arg(long, default_value_t = synth::DEFAULT_SEED)]
    pub seed: u64,
    /// Region feature size F of <split>_ims.npy ([N, 36, F]).
    #[arg(long, default_value_t = synth::DEFAULT_FEATURE_SIZE)]
    pub feature_size: usize,
}

pub fn run(a: SynthArgs) -> Result<()> {
    let t0 = Instant::now();
    let config = SynthConfig::with_images(a.images, a.seed, a.feature_size);
    let command: Vec<String> = std::env::args().collect();
    let data = synth::write_dataset(&a.out, &config, &command.join(" "))
        .with_context(|| format!("writing the synth dataset into {}", a.out.display()))?;
    for s in &data.splits {
        println!(
            "{:<5} {:>6} images, {:>6} captions, {:>5} edited copies (hard negatives)",
            s.name,
            s.n_images(),
            s.captions.len(),
            s.hard_negative_pairs().len()
        );
    }
    println!(
        "wrote {} (features [N, 36, {}], vocabulary of {} words) in {:.1} s",
        a.out.display(),
        config.feature_size,
        data.vocab_words.len() + 4,
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
