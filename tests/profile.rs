//! The per-op profile (`dynq_runtime::profile`) on the tiny BERT of the goldens (hidden 32, 4
//! heads, FFN 64, 2 layers, a classification head): the work of every op is counted exactly,
//! the rows add up to the forward's time, and bad lengths are refused. A binary of its own:
//! while a profile records, every forward of the process is counted, so no other test may run
//! forwards beside it.

dynq_macros::dynq_model!("golden/bert_logits.toml", kernels = "native");

use dynq_runtime::profile::{self, Op, Part};

#[test]
fn the_profile_accounts_for_every_op() {
    for threads in [1, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let len = 12;
        let p = pool
            .install(|| profile::encoder(&TinyBertLogits, len, 5))
            .unwrap();
        assert_eq!((p.seq_len, p.threads, p.runs), (len, threads, 5));
        let row = |op, part| {
            p.rows
                .iter()
                .find(|r| r.op == Some(op) && r.part == Some(part))
                .unwrap_or_else(|| panic!("no {op:?} {part:?} row in\n{p}"))
        };
        let (h, i, layers, t) = (32.0, 64.0, 2.0, len as f64);
        for (op, macs) in [
            (Op::Qkv, t * h * 3.0 * h),
            (Op::AttnOut, t * h * h),
            (Op::FfnUp, t * h * i),
            (Op::FfnDown, t * i * h),
        ] {
            let r = row(op, Part::Gemm);
            assert_eq!((r.calls, r.ops), (2, layers * macs), "{op:?}");
            assert!(r.limit.is_some_and(|l| l > 0.0), "{op:?}");
        }
        assert_eq!(row(Op::Qkv, Part::Quantize).ops, layers * t * h);
        assert_eq!(
            row(Op::Attention, Part::Scores).ops,
            layers * 2.0 * t * t * h
        );
        assert_eq!(row(Op::Attention, Part::Softmax).ops, layers * 4.0 * t * t);
        assert_eq!(row(Op::FfnUp, Part::Activation).ops, layers * t * i);
        assert_eq!(row(Op::Embeddings, Part::Lookup).calls, 1);
        // The head: BERT's pooler (32 x 32, tanh) and the 3 logits, on the first token.
        assert_eq!(row(Op::HeadDense, Part::Gemm).ops, h * h);
        assert_eq!(row(Op::HeadDense, Part::Activation).ops, h);
        assert_eq!(row(Op::HeadOut, Part::Gemm).ops, h * 3.0);
        let waits = p.rows.last().unwrap();
        assert_eq!((waits.op, waits.part), (None, None));
        let sum: f64 = p.rows.iter().map(|r| r.seconds).sum();
        assert!(
            p.rows.iter().all(|r| r.seconds >= 0.0) && (sum - p.total).abs() <= 0.05 * p.total,
            "rows {sum} s, total {} s\n{p}",
            p.total
        );
        assert!(p.limit() > 0.0 && p.limit().is_finite());
        let table = p.to_string();
        let s = if threads == 1 { "" } else { "s" };
        let title = format!("profile: tiny_bert_logits, 12 tokens, {threads} thread{s}");
        assert!(table.starts_with(&title), "{table}");
        assert!(table.contains("\ntotal: "), "{table}");
    }
    assert!(matches!(
        profile::encoder(&TinyBertLogits, 0, 1),
        Err(dynq_runtime::Error::EmptySequence)
    ));
    assert!(matches!(
        profile::encoder(&TinyBertLogits, 17, 1),
        Err(dynq_runtime::Error::SequenceTooLong { len: 17, max: 16 })
    ));
}
