//! Every kernel this machine can run against the scalar reference: bit-exact on the i32 sums
//! and on the dequantized outputs, over random shapes (M = 1, remainders of every tile
//! dimension, K not a multiple of the block) and extreme values.

use dynq_runtime::kernels::{packed_index, packed_len, Kernel, QuantizedRows, Scalar};
#[cfg(target_arch = "x86_64")]
use dynq_runtime::F32Linear;
use dynq_runtime::{Activation, QLinear};
use proptest::prelude::*;

/// The operands of one test GEMM, row-major and packed.
#[derive(Debug, Clone)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    a: Vec<i8>,
    zero_points: Option<Vec<i32>>,
    w: Vec<i8>,
    row_scales: Vec<f32>,
    w_scales: Vec<f32>,
    bias: Option<Vec<f32>>,
}

impl Case {
    fn stride(&self) -> usize {
        self.k.div_ceil(4) * 4
    }

    fn packed_a(&self) -> Vec<i8> {
        let s = self.stride();
        let mut out = vec![0; self.m * s];
        for i in 0..self.m {
            out[i * s..i * s + self.k].copy_from_slice(&self.a[i * self.k..(i + 1) * self.k]);
        }
        out
    }

    fn packed_w(&self) -> Vec<i8> {
        let mut out = vec![0; packed_len(self.n, self.k)];
        for j in 0..self.n {
            for k in 0..self.k {
                out[packed_index(j, k, self.k)] = self.w[j * self.k + k];
            }
        }
        out
    }

    fn col_sums(&self) -> Vec<i32> {
        (0..self.n)
            .map(|j| {
                self.w[j * self.k..(j + 1) * self.k]
                    .iter()
                    .map(|&v| i32::from(v))
                    .sum()
            })
            .collect()
    }

    /// Exact reference sums: sum (a - zp) w in i64.
    fn reference_sums(&self) -> Vec<i64> {
        let mut out = Vec::new();
        for i in 0..self.m {
            let zp = self.zero_points.as_ref().map_or(0, |z| z[i]);
            for j in 0..self.n {
                out.push(
                    (0..self.k)
                        .map(|k| {
                            i64::from(self.a[i * self.k + k]) * i64::from(self.w[j * self.k + k])
                        })
                        .sum::<i64>()
                        - i64::from(zp)
                            * self.w[j * self.k..(j + 1) * self.k]
                                .iter()
                                .map(|&v| i64::from(v))
                                .sum::<i64>(),
                );
            }
        }
        out
    }

    fn run<K: Kernel>(&self, kernel: K, unit_scales: bool, act: Activation) -> Vec<f32> {
        let (a, w, cs) = (self.packed_a(), self.packed_w(), self.col_sums());
        let ones_m = vec![1.0; self.m];
        let ones_n = vec![1.0; self.n];
        let qa = QuantizedRows {
            data: &a,
            stride: self.stride(),
            scales: if unit_scales {
                &ones_m
            } else {
                &self.row_scales
            },
            zero_points: self.zero_points.as_deref(),
        };
        let lin = QLinear {
            n: self.n,
            k: self.k,
            weight: &w,
            scales: if unit_scales { &ones_n } else { &self.w_scales },
            col_sums: &cs,
            bias: if unit_scales {
                None
            } else {
                self.bias.as_deref()
            },
        };
        let mut out = vec![f32::NAN; self.m * self.n];
        kernel.qgemm(qa, self.m, &lin, act, &mut out);
        out
    }
}

#[derive(Debug, Clone, Copy)]
enum Fill {
    Random,
    AllMax,
    AllMin,
    Zeros,
    ConstantRows,
}

fn case() -> impl Strategy<Value = Case> {
    case_in(1..=20, 1..=50, 1..=80)
}

/// Shapes that reach the AMX tiles and their remainders: several row tiles (M not a multiple
/// of 16 or 32), channel pairs and a single last tile (N not a multiple of 32), K over several
/// 64-value chunks and K blocks, not a multiple of 4 or 64.
fn large_case() -> impl Strategy<Value = Case> {
    case_in(1..=70, 1..=70, 1..=900)
}

fn case_in(
    m: std::ops::RangeInclusive<usize>,
    n: std::ops::RangeInclusive<usize>,
    k: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Case> {
    (
        m,
        n,
        k,
        prop_oneof![
            4 => Just(Fill::Random),
            1 => Just(Fill::AllMax),
            1 => Just(Fill::AllMin),
            1 => Just(Fill::Zeros),
            1 => Just(Fill::ConstantRows)
        ],
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(m, n, k, fill, asym, bias, seed)| {
            let mut s = seed | 1;
            let mut next = move || {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s
            };
            // Asymmetric activations are uint8 shifted by -128: [-128, 127]; symmetric [-127, 127].
            let lo: i32 = if asym { -128 } else { -127 };
            let a: Vec<i8> = (0..m * k)
                .map(|idx| match fill {
                    Fill::Random => (lo + (next() % (128 - lo) as u64) as i32) as i8,
                    Fill::AllMax => 127,
                    Fill::AllMin => lo as i8,
                    Fill::Zeros => 0,
                    Fill::ConstantRows => ((idx / k) as i32 * 37 % 255 + lo).clamp(lo, 127) as i8,
                })
                .collect();
            let w: Vec<i8> = (0..n * k)
                .map(|_| match fill {
                    Fill::AllMax => 127,
                    Fill::AllMin => -127,
                    Fill::Zeros => 0,
                    _ => ((next() % 255) as i32 - 127) as i8,
                })
                .collect();
            let unit = |x: u64| (x % 1000) as f32 / 997.0 + 1e-3;
            Case {
                m,
                n,
                k,
                a,
                zero_points: asym.then(|| (0..m).map(|_| (next() % 256) as i32 - 128).collect()),
                w,
                row_scales: (0..m).map(|_| unit(next()) * 0.05).collect(),
                w_scales: (0..n).map(|_| unit(next()) * 0.01).collect(),
                bias: bias.then(|| (0..n).map(|_| unit(next()) - 0.5).collect()),
            }
        })
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Checks `kernel` against the exact sums and bit for bit against `Scalar`.
fn check_kernel<K: Kernel>(kernel: K, c: &Case) -> Result<(), TestCaseError> {
    let sums = c.run(kernel, true, Activation::None);
    let exact: Vec<f32> = c.reference_sums().into_iter().map(|s| s as f32).collect();
    prop_assert_eq!(bits(&sums), bits(&exact), "i32 sums of {}", K::ID.name());
    for act in [Activation::None, Activation::Gelu, Activation::Sigmoid] {
        let out = c.run(kernel, false, act);
        let reference = c.run(Scalar::new(), false, act);
        prop_assert_eq!(
            bits(&out),
            bits(&reference),
            "outputs of {} with {:?}",
            K::ID.name(),
            act
        );
    }
    Ok(())
}

/// [`check_kernel`] for the scalar reference and every kernel this CPU runs.
fn check_every_kernel(c: &Case) {
    check_kernel(Scalar::new(), c).unwrap();
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = dynq_runtime::kernels::Avx2::detect() {
        check_kernel(k, c).unwrap();
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = dynq_runtime::kernels::Avx512Vnni::detect() {
        check_kernel(k, c).unwrap();
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = dynq_runtime::kernels::Amx::detect() {
        check_kernel(k, c).unwrap();
    }
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = dynq_runtime::kernels::AvxVnni::detect() {
        check_kernel(k, c).unwrap();
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(k) = dynq_runtime::kernels::NeonDot::detect() {
        check_kernel(k, c).unwrap();
    }
    #[cfg(target_arch = "aarch64")]
    if let Some(k) = dynq_runtime::kernels::NeonI8mm::detect() {
        check_kernel(k, c).unwrap();
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn scalar_matches_exact_sums(c in case()) {
        check_kernel(Scalar::new(), &c)?;
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_matches_scalar(c in case()) {
        match dynq_runtime::kernels::Avx2::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no AVX2"),
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_dot_matches_scalar(c in case()) {
        match dynq_runtime::kernels::NeonDot::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no dotprod"),
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_i8mm_matches_scalar(c in case()) {
        match dynq_runtime::kernels::NeonI8mm::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no i8mm"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512vnni_matches_scalar(c in case()) {
        match dynq_runtime::kernels::Avx512Vnni::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no AVX-512 VNNI"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_matches_scalar(c in case()) {
        match dynq_runtime::kernels::Amx::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no AMX-INT8 (or the OS refused its tiles)"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avxvnni_matches_scalar(c in case()) {
        match dynq_runtime::kernels::AvxVnni::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no AVX-VNNI"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_f32_matches_scalar_closely(m in 1usize..6, n in 1usize..20, k in 1usize..70, seed in any::<u64>()) {
        let Some(avx2) = dynq_runtime::kernels::Avx2::detect() else { return Ok(()) };
        let mut s = seed | 1;
        let mut next = || { s = s.wrapping_mul(6364136223846793005).wrapping_add(1); ((s >> 40) as f32 / (1u64 << 24) as f32) - 0.5 };
        let x: Vec<f32> = (0..m * k).map(|_| next()).collect();
        let wt: Vec<f32> = (0..n * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..n).map(|_| next()).collect();
        let lin = F32Linear { n, k, weight: &wt, bias: Some(&b) };
        let (mut o1, mut o2) = (vec![0.0; m * n], vec![0.0; m * n]);
        avx2.gemm_f32(&x, m, &lin, Activation::None, &mut o1);
        Scalar::new().gemm_f32(&x, m, &lin, Activation::None, &mut o2);
        for (a, b) in o1.iter().zip(&o2) {
            prop_assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{} vs {}", a, b);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn amx_matches_scalar_on_large_shapes(c in large_case()) {
        match dynq_runtime::kernels::Amx::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no AMX-INT8 (or the OS refused its tiles)"),
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx512vnni_matches_scalar_on_large_shapes(c in large_case()) {
        match dynq_runtime::kernels::Avx512Vnni::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no AVX-512 VNNI"),
        }
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_i8mm_matches_scalar_on_large_shapes(c in large_case()) {
        match dynq_runtime::kernels::NeonI8mm::detect() {
            Some(k) => check_kernel(k, &c)?,
            None => eprintln!("skipped: this CPU has no i8mm"),
        }
    }
}

/// BERT-like shapes through every x86 kernel: K = 3072 and 768 with rows and channels that
/// leave remainders of every AMX tile and K block (and whole tiles, M = 128).
#[test]
fn bert_shapes_match_scalar() {
    let shapes = [
        (16, 48, 3072),
        (37, 33, 3072),
        (128, 64, 768),
        (50, 80, 1538),
        (4, 17, 770),
        (19, 96, 384),
    ];
    for (si, &(m, n, k)) in shapes.iter().enumerate() {
        let mut s = 0x9E3779B97F4A7C15u64 ^ si as u64;
        let mut next = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let unit = |x: u64| (x % 1000) as f32 / 997.0 + 1e-3;
        let c = Case {
            m,
            n,
            k,
            a: (0..m * k)
                .map(|_| ((next() % 256) as i32 - 128) as i8)
                .collect(),
            zero_points: Some((0..m).map(|_| (next() % 256) as i32 - 128).collect()),
            w: (0..n * k)
                .map(|_| ((next() % 255) as i32 - 127) as i8)
                .collect(),
            row_scales: (0..m).map(|_| unit(next()) * 0.05).collect(),
            w_scales: (0..n).map(|_| unit(next()) * 0.01).collect(),
            bias: Some((0..n).map(|_| unit(next()) - 0.5).collect()),
        };
        #[cfg(target_arch = "x86_64")]
        {
            use dynq_runtime::kernels::{Amx, Avx2, Avx512Vnni, AvxVnni};
            match Amx::detect() {
                Some(k) => check_kernel(k, &c).unwrap(),
                None => eprintln!("skipped amx: this CPU has no AMX-INT8"),
            }
            if let Some(k) = Avx512Vnni::detect() {
                check_kernel(k, &c).unwrap();
            }
            if let Some(k) = AvxVnni::detect() {
                check_kernel(k, &c).unwrap();
            }
            if let Some(k) = Avx2::detect() {
                check_kernel(k, &c).unwrap();
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            use dynq_runtime::kernels::{NeonDot, NeonI8mm};
            if let Some(k) = NeonDot::detect() {
                check_kernel(k, &c).unwrap();
            }
            if let Some(k) = NeonI8mm::detect() {
                check_kernel(k, &c).unwrap();
            }
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        check_kernel(Scalar::new(), &c).unwrap();
    }
}

#[test]
fn long_k_and_saturation_edge() {
    // K = 3072 (BERT-base FFN), every activation -128 and every weight +127 or -127 (by
    // channel): every pair sum is +-32512, the largest the shifted scheme allows, and the
    // sums reach 1.2e6 * 32 = 5e7. Activations 127 are 255 once flipped to unsigned (AMX and
    // VNNI): the largest unsigned operand. M = 37 runs the AMX tiles (three row tiles).
    for (m, fill) in [(5, -128), (37, -128), (37, 127)] {
        let n = 33;
        let k = 3072;
        let c = Case {
            m,
            n,
            k,
            a: vec![fill; m * k],
            zero_points: Some(vec![0; m]),
            w: (0..n * k)
                .map(|i| if (i / k) % 2 == 0 { 127 } else { -127 })
                .collect(),
            row_scales: vec![0.5; m],
            w_scales: vec![0.25; n],
            bias: None,
        };
        check_every_kernel(&c);
    }
}

/// Empty products: no rows (nothing written), or no inputs (every output is the bias), on
/// every kernel; K = 0 with enough rows for the AMX tiles, which would otherwise have no chunk
/// to load.
#[test]
fn empty_products() {
    for (m, n, k) in [
        (0, 5, 8),
        (0, 40, 200),
        (5, 17, 0),
        (40, 33, 0),
        (1, 3, 0),
        (40, 0, 16),
    ] {
        let c = Case {
            m,
            n,
            k,
            a: vec![3; m * k],
            zero_points: Some(vec![1; m]),
            w: vec![-2; n * k],
            row_scales: vec![0.5; m],
            w_scales: vec![0.25; n],
            bias: Some((0..n).map(|j| j as f32).collect()),
        };
        check_every_kernel(&c);
    }
}

/// The f32 path (f32 builds) on empty products: no inputs gives the bias, no channels or rows
/// nothing.
#[test]
fn empty_f32_products() {
    for (m, n, k) in [(3, 5, 0), (0, 5, 7), (3, 0, 7), (3, 0, 0)] {
        let x = vec![1.0f32; m * k];
        let wt = vec![0.5f32; n * k];
        let b: Vec<f32> = (0..n).map(|j| j as f32 - 1.0).collect();
        let lin = dynq_runtime::F32Linear {
            n,
            k,
            weight: &wt,
            bias: Some(&b),
        };
        let want: Vec<f32> = (0..m * n)
            .map(|i| (b[i % n] + 0.5 * k as f32).max(0.0))
            .collect();
        let mut out = vec![f32::NAN; m * n];
        Scalar::new().gemm_f32(&x, m, &lin, Activation::Relu, &mut out);
        assert_eq!(out, want, "scalar {m} x {n} x {k}");
        #[cfg(target_arch = "x86_64")]
        if let Some(avx2) = dynq_runtime::kernels::Avx2::detect() {
            let mut out = vec![f32::NAN; m * n];
            avx2.gemm_f32(&x, m, &lin, Activation::Relu, &mut out);
            assert_eq!(out, want, "avx2 {m} x {n} x {k}");
        }
    }
}

/// What this process selects with no `DYNQ_KERNEL`: the best kernel the CPU supports.
#[test]
fn detection_picks_the_best_available_kernel() {
    if std::env::var_os("DYNQ_KERNEL").is_some() {
        return;
    }
    let id = dynq_runtime::selected_kernel().unwrap();
    println!("selected kernel: {}", id.name());
    #[cfg(target_arch = "x86_64")]
    {
        use dynq_runtime::kernels::{Amx, Avx2, Avx512Vnni, AvxVnni};
        let expected = if Amx::detect().is_some() {
            dynq_runtime::KernelId::Amx
        } else if Avx512Vnni::detect().is_some() {
            dynq_runtime::KernelId::Avx512Vnni
        } else if AvxVnni::detect().is_some() {
            dynq_runtime::KernelId::AvxVnni
        } else if Avx2::detect().is_some() {
            dynq_runtime::KernelId::Avx2
        } else {
            dynq_runtime::KernelId::Scalar
        };
        assert_eq!(id, expected);
    }
    #[cfg(target_arch = "aarch64")]
    {
        use dynq_runtime::kernels::{NeonDot, NeonI8mm};
        let expected = if NeonI8mm::detect().is_some() {
            dynq_runtime::KernelId::NeonI8mm
        } else if NeonDot::detect().is_some() {
            dynq_runtime::KernelId::NeonDot
        } else {
            dynq_runtime::KernelId::Scalar
        };
        assert_eq!(id, expected);
    }
    if let Ok(expected) = std::env::var("DYNQ_EXPECT_KERNEL") {
        assert_eq!(id.name(), expected, "DYNQ_EXPECT_KERNEL");
    }
}

/// A batch gives exactly the rows it gives one at a time, whether or not its row blocks run on
/// several threads (feature `rayon`).
#[test]
fn batched_linear_equals_row_by_row() {
    use dynq_runtime::ops::{linear_q, ActQuant};
    use dynq_runtime::{Granularity, Scheme};
    const K: usize = 37;
    const N: usize = 21;
    let rows = 100;
    let c = Case {
        m: 1,
        n: N,
        k: K,
        a: vec![],
        zero_points: None,
        w: (0..N * K)
            .map(|i| (((i * 7919) % 255) as i32 - 127) as i8)
            .collect(),
        row_scales: vec![],
        w_scales: (0..N).map(|j| 0.01 + j as f32 * 1e-3).collect(),
        bias: None,
    };
    let (w, cs) = (c.packed_w(), c.col_sums());
    let lin = QLinear {
        n: N,
        k: K,
        weight: &w,
        scales: &c.w_scales,
        col_sums: &cs,
        bias: None,
    };
    let x: Vec<f32> = (0..rows * K)
        .map(|i| ((i * 31 % 97) as f32 - 48.0) * (1.0 + (i / K) as f32))
        .collect();
    for scheme in [Scheme::Symmetric, Scheme::Asymmetric] {
        let aq = ActQuant {
            granularity: Granularity::PerToken,
            scheme,
        };
        let run = |x: &[f32], m: usize| {
            let (mut q, mut s, mut z, mut out) = (
                vec![0i8; m * 40],
                vec![0.0; m],
                vec![0; m],
                vec![0.0; m * N],
            );
            #[cfg(target_arch = "x86_64")]
            if let Some(k) = dynq_runtime::kernels::Avx2::detect() {
                linear_q::<_, K, N>(
                    k,
                    x,
                    m,
                    &lin,
                    Activation::Gelu,
                    aq,
                    &mut q,
                    &mut s,
                    &mut z,
                    &mut out,
                );
                return out;
            }
            linear_q::<_, K, N>(
                Scalar::new(),
                x,
                m,
                &lin,
                Activation::Gelu,
                aq,
                &mut q,
                &mut s,
                &mut z,
                &mut out,
            );
            out
        };
        let batch = run(&x, rows);
        for r in 0..rows {
            let one = run(&x[r * K..(r + 1) * K], 1);
            assert_eq!(
                bits(&one),
                bits(&batch[r * N..(r + 1) * N]),
                "row {r} {scheme:?}"
            );
        }
    }
}
