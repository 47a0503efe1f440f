use dynq_runtime::text::Truncate;
dynq_macros::dynq_model!("models/minilm/minilm.toml"); // all-MiniLM-L6-v2, INT8

fn main() -> Result<(), dynq_runtime::Error> {
    let embedding = Minilm.embed_text("Rust is fast.", Truncate::At(256))?;
    println!("{:?}", &embedding[..4]);
    Ok(())
}
