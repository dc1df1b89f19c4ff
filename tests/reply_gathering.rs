//! Reply gathering (`modbus::gather`) on a real runtime: eight Modbus TCP devices (std threads
//! on loopback sockets) answer a burst of reads 100 µs apart; with the park hook the runtime
//! thread handles each burst's replies in a few wake-ups instead of one per reply, and every
//! read still returns the device's registers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gasdtu::config::{BusConfig, Transport};
use gasdtu::modbus::gather;
use gasdtu::modbus::link::Link;
use gasdtu::model::Table;

const DEVICES: u16 = 8;
const BURSTS: u32 = 12;

/// A Modbus TCP device answering read-holding-registers requests with `start + i` after
/// `delay`; returns its port.
fn device(delay: Duration, value: u16) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = l.accept() else { return };
        s.set_nodelay(true).unwrap();
        let mut req = [0u8; 12];
        while s.read_exact(&mut req).is_ok() {
            std::thread::sleep(delay);
            let count = u16::from_be_bytes([req[10], req[11]]);
            let mut pdu = vec![0x03, (count * 2) as u8];
            for _ in 0..count {
                pdu.extend_from_slice(&value.to_be_bytes());
            }
            let mut adu = Vec::new();
            adu.extend_from_slice(&req[0..4]);
            adu.extend_from_slice(&((pdu.len() + 1) as u16).to_be_bytes());
            adu.push(req[6]);
            adu.extend_from_slice(&pdu);
            if s.write_all(&adu).is_err() {
                return;
            }
        }
    });
    port
}

fn link(port: u16) -> Link {
    Link::new(BusConfig {
        name: format!("d{port}"),
        transport: Transport::Tcp {
            host: "127.0.0.1".into(),
            port,
        },
        timeout: Duration::from_secs(2),
        turnaround: Duration::ZERO,
        retries: 0,
    })
}

/// Runs `BURSTS` bursts of one read per device on a current-thread runtime, the park hook
/// installed or not; returns the parks counted during the bursts (after the connections are
/// open) and checks every value read.
fn parks_per_burst(hook: bool) -> f64 {
    let ports: Vec<u16> = (0..DEVICES)
        .map(|i| device(Duration::from_micros(100 * u64::from(i)), 100 + i))
        .collect();
    let parks = Arc::new(AtomicU32::new(0));
    let counted = parks.clone();
    let mut b = tokio::runtime::Builder::new_current_thread();
    b.enable_all().on_thread_park(move || {
        counted.fetch_add(1, Ordering::Relaxed);
        if hook {
            gather::on_park();
        }
    });
    let rt = b.build().unwrap();
    rt.block_on(async move {
        let mut links: Vec<Link> = ports.iter().map(|&p| link(p)).collect();
        // Connect every link first (one read each), outside the count.
        for (i, l) in links.iter_mut().enumerate() {
            assert_eq!(
                l.read(1, Table::HoldingRegister, 0, 2).await.unwrap(),
                vec![100 + i as u16; 2]
            );
        }
        let before = parks.load(Ordering::Relaxed);
        for _ in 0..BURSTS {
            // One task per device, all spawned before the runtime's next pass: the requests go
            // out together, as at a poll instant.
            let mut reads = tokio::task::JoinSet::new();
            for (i, mut l) in links.drain(..).enumerate() {
                reads.spawn(async move {
                    let r = l.read(1, Table::HoldingRegister, 0, 4).await;
                    (i, l, r)
                });
            }
            let mut got = reads.join_all().await;
            got.sort_by_key(|(i, _, _)| *i);
            for (i, l, r) in got {
                assert_eq!(r.unwrap(), vec![100 + i as u16; 4], "device {i}");
                links.push(l);
            }
            // A pause between bursts, as between poll cycles.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        f64::from(parks.load(Ordering::Relaxed) - before) / f64::from(BURSTS)
    })
}

#[test]
fn a_burst_of_replies_costs_a_few_wake_ups_not_one_each() {
    // Without the hook the runtime parks about once per reply (8 replies 100 µs apart, each
    // handled in microseconds) plus the pause between bursts.
    let plain = parks_per_burst(false);
    assert!(plain >= 6.0, "without gathering: {plain} parks per burst");
    // With it: the sleep after the requests, the pass that handles the gathered replies, the
    // pause; a reply later than the window (it settles around the last reply) costs one more.
    let gathered = parks_per_burst(true);
    assert!(
        gathered <= 6.0 && gathered <= plain / 2.0,
        "with gathering: {gathered} parks per burst (without: {plain})"
    );
    eprintln!("parks per burst: {plain} without gathering, {gathered} with");
    let w = gather::window_micros();
    assert!(
        (gather::FLOOR_US..=gather::CAP_US).contains(&w),
        "window {w} µs"
    );
}
