//! Exact k nearest neighbours (k = 10, self excluded), f32, d = 128.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tripletcore_core::{knn, Matrix, Metric};

mod common;

fn knn_scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("knn10_f32_d128");
    group.sample_size(10);
    for n in common::SIZES {
        let data = common::points(n, common::DIM, 3);
        let x = Matrix::new(&data, n, common::DIM, "X").unwrap();
        group.throughput(Throughput::Elements((n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &x, |b, x| {
            b.iter(|| knn(x, 10, None, Metric::Euclidean, true).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, knn_scan);
criterion_main!(benches);
