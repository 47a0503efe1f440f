dynq_macros::dynq_model!("../../../../tests/macro-ui/ui/bad_syntax.toml");

fn main() {
    let mut out = [0.0; 7];
    let _ = UiModel.forward(&[0.0; 24], 1, &mut out);
}
