use prost::Message;

use super::proto::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorShapeProto, TypeProto, TypeTensor, ValueInfoProto, Dimension};
use super::*;

fn node(tree: &mut Vec<TreeNode>, feature: u32, threshold: f32) -> usize {
    tree.push(TreeNode { mode: NodeMode::Leq, feature, threshold, yes: 0, no: 0, missing_yes: false, value: 0.0, cover: 0.0 });
    tree.len() - 1
}

fn leaf(tree: &mut Vec<TreeNode>, value: f64) -> usize {
    tree.push(TreeNode { mode: NodeMode::Leaf, feature: 0, threshold: 0.0, yes: 0, no: 0, missing_yes: false, value, cover: 0.0 });
    tree.len() - 1
}

/// A random full tree of `depth` over `features` columns (a feature may repeat on a path).
fn random_tree(rng: &mut u64, depth: usize, features: u32) -> Vec<TreeNode> {
    fn next(rng: &mut u64) -> f64 {
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        (*rng >> 11) as f64 / (1u64 << 53) as f64
    }
    fn build(t: &mut Vec<TreeNode>, rng: &mut u64, depth: usize, features: u32) -> usize {
        if depth == 0 {
            return leaf(t, next(rng) * 2.0 - 1.0);
        }
        let i = node(t, (next(rng) * f64::from(features)) as u32, next(rng) as f32);
        let y = build(t, rng, depth - 1, features);
        let n = build(t, rng, depth - 1, features);
        t[i].yes = y as u32;
        t[i].no = n as u32;
        i
    }
    let mut t = Vec::new();
    build(&mut t, rng, depth, features);
    t
}

/// E[f(x) | x_S] with the path-dependent rule (the paper's Algorithm 1): follow x on features
/// in S, else average the children by cover.
fn expectation(tree: &[TreeNode], i: usize, x: &[f32], s: u32) -> f64 {
    let n = &tree[i];
    if n.mode == NodeMode::Leaf {
        return n.value;
    }
    if s & (1 << n.feature) != 0 {
        let next = if n.goes_yes(x[n.feature as usize]) { n.yes } else { n.no } as usize;
        expectation(tree, next, x, s)
    } else {
        let (y, no) = (n.yes as usize, n.no as usize);
        let (wy, wn) = if n.cover > 0.0 { (tree[y].cover / n.cover, tree[no].cover / n.cover) } else { (0.5, 0.5) };
        wy * expectation(tree, y, x, s) + wn * expectation(tree, no, x, s)
    }
}

fn factorial(n: u32) -> f64 {
    (1..=n).map(f64::from).product()
}

#[test]
fn tree_shap_equals_brute_force_shapley_values_and_adds_up_to_the_score() {
    let m = 4u32;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for trial in 0..30 {
        let trees: Vec<Vec<TreeNode>> = (0..3).map(|_| random_tree(&mut rng, 2 + trial % 3, m)).collect();
        let mut ens = TreeEnsemble { trees, base_value: 0.25, post_transform: PostTransform::Logistic, cover: Cover::Count, expected_value: 0.0 };
        // Covers from a grid of rows.
        let rows: Vec<Vec<f32>> = (0..300).map(|r| (0..m).map(|f| ((r * 7 + f as usize * 13) % 17) as f32 / 17.0).collect()).collect();
        ens.fit_covers(rows.iter().map(Vec::as_slice), Cover::Count);
        let x: Vec<f32> = (0..m).map(|f| ((trial as u32 * 5 + f * 3) % 11) as f32 / 11.0).collect();
        let mut phi = vec![0.0; m as usize];
        shap::tree_shap(&ens, &x, &mut phi);
        // Brute force over subsets.
        for i in 0..m {
            let mut want = 0.0;
            for s in 0u32..(1 << m) {
                if s & (1 << i) != 0 {
                    continue;
                }
                let k = s.count_ones();
                let w = factorial(k) * factorial(m - k - 1) / factorial(m);
                let gain: f64 = ens.trees.iter().map(|t| expectation(t, 0, &x, s | (1 << i)) - expectation(t, 0, &x, s)).sum();
                want += w * gain;
            }
            assert!((phi[i as usize] - want).abs() < 1e-10, "trial {trial} feature {i}: {} vs {want}", phi[i as usize]);
        }
        let total = ens.expected_value + phi.iter().sum::<f64>();
        assert!((total - ens.margin(&x)).abs() < 1e-10, "local accuracy: {total} vs {}", ens.margin(&x));
    }
}

#[test]
fn hessian_covers_weigh_rows_by_p_times_one_minus_p_round_by_round() {
    let mut t = Vec::new();
    let root = node(&mut t, 0, 0.5);
    let a = leaf(&mut t, 2.0);
    let b = leaf(&mut t, -1.0);
    t[root].yes = a as u32;
    t[root].no = b as u32;
    let mut ens = TreeEnsemble { trees: vec![t.clone(), t], base_value: 0.0, post_transform: PostTransform::Logistic, cover: Cover::Count, expected_value: 0.0 };
    let rows = [[0.0f32], [1.0f32]];
    ens.fit_covers(rows.iter().map(|r| &r[..]), Cover::Hessian);
    // Round 1 at margin 0: p = 0.5 for both rows.
    assert!((ens.trees[0][0].cover - 0.5).abs() < 1e-12);
    // Round 2: the first row's margin is 2, the second's −1.
    let h = |m: f64| {
        let p = 1.0 / (1.0 + (-m as f64).exp());
        p * (1.0 - p)
    };
    assert!((ens.trees[1][1].cover - h(2.0)).abs() < 1e-12);
    assert!((ens.trees[1][2].cover - h(-1.0)).abs() < 1e-12);
    assert_eq!(ens.default_cover(), Cover::Count, "BRANCH_LEQ is not XGBoost's");
}

fn float_input(name: &str) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            tensor_type: Some(TypeTensor {
                elem_type: proto::data_type::FLOAT,
                shape: Some(TensorShapeProto { dim: vec![Dimension { dim_value: None, dim_param: Some("N".into()) }, Dimension { dim_value: Some(1), dim_param: None }] }),
            }),
        }),
    }
}

fn attr_floats(name: &str, v: &[f32]) -> AttributeProto {
    AttributeProto { name: name.into(), floats: v.to_vec(), ..Default::default() }
}

fn ml(op: &str, name: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        attribute,
        domain: if matches!(op, "Concat" | "Erf") { String::new() } else { "ai.onnx.ml".into() },
    }
}

fn model(nodes: Vec<NodeProto>) -> Vec<u8> {
    ModelProto {
        ir_version: 8,
        producer_name: "test".into(),
        graph: Some(GraphProto { node: nodes, name: "g".into(), input: vec![float_input("a"), float_input("b")], ..Default::default() }),
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn a_scaled_linear_graph_scores_what_its_arithmetic_says() {
    let bytes = model(vec![
        NodeProto { attribute: vec![AttributeProto { name: "axis".into(), i: 1, ..Default::default() }], ..ml("Concat", "c", &["a", "b"], &["ab"], vec![]) },
        ml("Imputer", "imp", &["ab"], &["i"], vec![attr_floats("imputed_value_floats", &[10.0, 20.0]), AttributeProto { name: "replaced_value_float".into(), f: f32::NAN, ..Default::default() }]),
        ml("Scaler", "sc", &["i"], &["s"], vec![attr_floats("offset", &[1.0, 2.0]), attr_floats("scale", &[0.5, 0.25])]),
        ml(
            "LinearClassifier",
            "lin",
            &["s"],
            &["label", "prob"],
            vec![
                attr_floats("coefficients", &[-0.3, -0.7, 0.3, 0.7]),
                attr_floats("intercepts", &[0.1, -0.1]),
                AttributeProto { name: "classlabels_ints".into(), ints: vec![0, 1], ..Default::default() },
                AttributeProto { name: "post_transform".into(), s: b"LOGISTIC".to_vec(), ..Default::default() },
            ],
        ),
    ]);
    let m = compile(&bytes, "t.onnx", &ImportOptions::default()).unwrap();
    assert_eq!(m.slots.len(), 2);
    let features = crate::pipeline::artifact::Features {
        numeric: ["a", "b"].iter().map(|n| crate::pipeline::artifact::NumericFeature { name: n.to_string(), fill_value: 0.0, mean: 0.0, std: 1.0, missing_indicator: false }).collect(),
        categorical: vec![],
    };
    let rt = ImportRuntime::new(&m, &features).unwrap();
    let mut tx = Transaction { numeric: vec![5.0, f64::NAN], ..Default::default() };
    let mut x = vec![0.0; 2];
    rt.fill(&tx, &mut x);
    // a: (5 − 1) × 0.5 = 2; b missing → 20: (20 − 2) × 0.25 = 4.5.
    assert_eq!(x, vec![2.0, 4.5]);
    let want = 1.0 / (1.0 + (-(0.3f64 * 2.0 + 0.7 * 4.5 - 0.1)).exp());
    assert!((rt.probability(&x) - want).abs() < 1e-6);
    let mut c = vec![0.0; 2];
    rt.contributions(&x, &mut c);
    assert!((c[0] - 0.6).abs() < 1e-6 && (c[1] - 3.15).abs() < 1e-6, "{c:?}");
    tx.numeric[1] = 2.0;
    rt.fill(&tx, &mut x);
    assert_eq!(x[1], 0.0);
}

#[test]
fn an_unsupported_operator_is_named_with_its_node() {
    let bytes = model(vec![ml("Erf", "the_erf", &["a"], &["y"], vec![])]);
    let e = compile(&bytes, "t.onnx", &ImportOptions::default()).unwrap_err().to_string();
    assert!(e.contains("`Erf`") && e.contains("the_erf"), "{e}");
    let e = compile(b"not a model at all", "t.onnx", &ImportOptions::default()).unwrap_err().to_string();
    assert!(e.contains("not an ONNX model"), "{e}");
    let e = compile(&model(vec![]), "t.onnx", &ImportOptions::default()).unwrap_err().to_string();
    assert!(e.contains("no LinearClassifier or TreeEnsembleClassifier"), "{e}");
}

#[test]
fn the_branch_free_layout_scores_exactly_as_node_by_node_with_ties_and_missing_values() {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let modes = [NodeMode::Leq, NodeMode::Lt, NodeMode::Gt, NodeMode::Gte];
    for trial in 0..50usize {
        let mut trees: Vec<Vec<TreeNode>> = (0..13).map(|k| random_tree(&mut rng, 1 + (trial + k) % 5, 3)).collect();
        let mut thresholds = vec![f32::NAN];
        for (k, t) in trees.iter_mut().enumerate() {
            for (j, n) in t.iter_mut().enumerate() {
                if n.mode != NodeMode::Leaf {
                    n.mode = modes[(trial + k + j) % 4];
                    n.missing_yes = (trial + j) % 3 == 0;
                    thresholds.push(n.threshold);
                    thresholds.push(n.threshold.next_up());
                    thresholds.push(n.threshold.next_down());
                }
            }
        }
        let ens = TreeEnsemble { trees, base_value: 0.5, post_transform: PostTransform::None, cover: Cover::Count, expected_value: 0.0 };
        let fast = CompleteTrees::build(&ens).expect("shallow trees with ordered splits");
        for a in 0..thresholds.len() {
            let x = [thresholds[a], thresholds[(a * 7 + 3) % thresholds.len()], thresholds[(a * 13 + 1) % thresholds.len()]];
            assert_eq!(fast.margin(&x), ens.margin(&x), "trial {trial}, x = {x:?}");
        }
    }
}

#[test]
fn precomputed_tables_give_the_recursive_treeshap_values() {
    let mut rng = 0x1234_5678_9ABC_DEF1u64;
    for trial in 0..40usize {
        // Few columns, so features repeat on paths; a coarse row grid, so some nodes have no rows.
        let trees: Vec<Vec<TreeNode>> = (0..4).map(|k| random_tree(&mut rng, 1 + (trial + k) % 6, 3)).collect();
        let mut ens = TreeEnsemble { trees, base_value: -0.5, post_transform: PostTransform::Logistic, cover: Cover::Count, expected_value: 0.0 };
        let rows: Vec<Vec<f32>> = (0..40).map(|r| (0..3).map(|f| ((r * 5 + f * 11) % 7) as f32 / 7.0).collect()).collect();
        ens.fit_covers(rows.iter().map(Vec::as_slice), Cover::Hessian);
        let tables = shap::PathTables::build(&ens).expect("small trees");
        for r in 0..12 {
            let mut x: Vec<f32> = (0..3).map(|f| ((r * 3 + f * 5 + trial) % 9) as f32 / 9.0).collect();
            if r % 4 == 0 {
                x[r % 3] = f32::NAN;
            }
            let (mut want, mut got) = (vec![0.0; 3], vec![0.0; 3]);
            shap::tree_shap(&ens, &x, &mut want);
            tables.shap(&ens, &x, &mut got, &mut Vec::new());
            for f in 0..3 {
                assert!((want[f] - got[f]).abs() < 1e-12, "trial {trial}, x {x:?}, feature {f}: {} vs {}", got[f], want[f]);
            }
        }
    }
}
