//! The batch-hard scan (fused tiles, screen and exact settle), f32, d = 128,
//! classes of 8.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tripletcore_core::{batch_hard, Matrix, Metric};

mod common;

fn batch_hard_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_hard_f32_d128");
    group.sample_size(10);
    for n in common::SIZES {
        let data = common::points(n, common::DIM, 2);
        // Classes of 8 consecutive rows, as in a P x K batch.
        let labels: Vec<i64> = (0..n as i64).map(|i| i / 8).collect();
        let x = Matrix::new(&data, n, common::DIM, "X").unwrap();
        group.throughput(Throughput::Elements((n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &x, |b, x| {
            b.iter(|| batch_hard(x, &labels, None, Metric::Euclidean).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, batch_hard_scan);
criterion_main!(benches);
