//! The services really start, answer, and stop.

use spillway_support::{port_open, Moto, Postgres};

#[test]
fn postgres_starts_stops_and_restarts() {
    let pg = Postgres::start().expect("postgres starts");
    assert_eq!(pg.psql("select 1 + 1").expect("query"), "2");
    pg.psql("create table t (x int); insert into t values (7)")
        .expect("write");
    pg.stop().expect("stop");
    assert!(!port_open(pg.port()));
    pg.start_again().expect("start again");
    assert_eq!(pg.psql("select x from t").expect("data kept"), "7");
    let port = pg.port();
    drop(pg);
    assert!(!port_open(port), "dropped cluster is down");
}

#[test]
fn moto_starts_and_stops() {
    let moto = Moto::start().expect("moto starts");
    let port = moto.port();
    let (status, _) = spillway_support::http_get(port, "/moto-api/").expect("answers");
    assert_eq!(status, 200);
    drop(moto);
    assert!(!port_open(port), "dropped moto is down");
}
