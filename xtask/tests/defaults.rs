//! Defaults repeated outside their one definition agree with it: the
//! controller set (`contract::controllers::DEFAULT`) as the committed
//! matrix lists it and as `--controllers` shows it in `--help`.

use clap::Args;

fn default_set() -> String {
    contract::controllers::DEFAULT.join(",")
}

#[test]
fn the_default_matrix_lists_the_default_controllers() {
    let m = xtask::matrix::Config::read(&xtask::matrix::default_config()).unwrap();
    assert_eq!(
        m.controllers,
        [default_set()],
        "matrix/default.toml's controllers axis differs from contract::controllers::DEFAULT"
    );
}

#[test]
fn patch_and_test_defaults_to_the_default_controllers() {
    let cmd = xtask::pipeline::PatchAndTest::augment_args(clap::Command::new("patch-and-test"));
    let arg = cmd
        .get_arguments()
        .find(|a| a.get_id() == "controllers")
        .unwrap();
    assert_eq!(arg.get_default_values(), [default_set().as_str()]);
}
