//! Repository ids are checked as the hub checks them before they reach a URL or a path.

use faceid_hub::check_repo_id;

#[test]
fn the_hubs_rules() {
    for ok in [
        "SG161222/Realistic_Vision_V4.0_noVAE",
        "SG161222/RealVisXL_V3.0",
        "h94/IP-Adapter-FaceID",
        "a/b",
    ] {
        assert_eq!(check_repo_id(ok), Ok(()), "{ok}");
    }
    for bad in [
        "../../etc",
        "a/b?x=1#frag",
        "a/b/c",
        "noslash",
        "/b",
        "a/",
        "a/-b",
        "a/b.",
        "a--x/b",
        "a/b..c",
        "a/b c",
        "a/é",
        &format!("a/{}", "x".repeat(95)),
    ] {
        assert!(check_repo_id(bad).is_err(), "{bad}");
    }
}
