//! The tiled distance loop, through the public `cdist` (the full N x N
//! matrix: the loop plus its stores), f32, d = 128.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tripletcore_core::{cdist, Matrix, Metric};

mod common;

fn tile_loop(c: &mut Criterion) {
    let mut group = c.benchmark_group("cdist_f32_d128");
    group.sample_size(10);
    for n in common::SIZES {
        let data = common::points(n, common::DIM, 1);
        let x = Matrix::new(&data, n, common::DIM, "X").unwrap();
        group.throughput(Throughput::Elements((n * n) as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &x, |b, x| {
            b.iter(|| cdist(x, None, Metric::SqEuclidean).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, tile_loop);
criterion_main!(benches);
