//! InstructPix2Pix's CLIP filter numbers against torch's `F.cosine_similarity` as
//! metrics/clip_similarity.py uses it (scripts/fixtures/clip_similarity.py).

use huatu_data::instruct_pix2pix::similarity::{ClipSimilarity, ClipThresholds};
use serde::Deserialize;

#[derive(Deserialize)]
struct Case {
    image_0: Vec<f32>,
    image_1: Vec<f32>,
    text_0: Vec<f32>,
    text_1: Vec<f32>,
    sim_0: f32,
    sim_1: f32,
    sim_direction: f32,
    sim_image: f32,
}

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[test]
fn clip_similarity_equals_the_reference_formula() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/clip_similarity/cases.json"
    );
    let cases: Cases =
        serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("json");
    assert_eq!(cases.cases.len(), 6);
    for (index, case) in cases.cases.iter().enumerate() {
        let got = ClipSimilarity::new(&case.image_0, &case.image_1, &case.text_0, &case.text_1);
        for (name, got, want) in [
            ("sim_0", got.sim_0, case.sim_0),
            ("sim_1", got.sim_1, case.sim_1),
            ("sim_direction", got.sim_direction, case.sim_direction),
            ("sim_image", got.sim_image, case.sim_image),
        ] {
            assert!(
                (got - want).abs() < 1e-6,
                "case {index} {name}: {got} vs {want}"
            );
        }
    }
    // identical images: no direction, which the 0.2 threshold rejects
    let identical = &cases.cases[4];
    let similarity = ClipSimilarity::new(
        &identical.image_0,
        &identical.image_1,
        &identical.text_0,
        &identical.text_1,
    );
    let reason = ClipThresholds::default()
        .rejection(&similarity)
        .expect("rejected");
    assert!(reason.contains("direction 0.000"), "{reason}");
}
