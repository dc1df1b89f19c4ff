//! Acquisition: one task per bus owns its transport and polls its devices on wall-clock aligned
//! schedules. Samples leave acquisition through one narrow boundary: the `SampleBatch` channel
//! returned by `start`. Acquisition never waits on storage beyond that bounded channel and
//! never on the uplink. Requests into a bus (interlock writes, raw CLI transactions) go through
//! the channels in `Acquisition`, served by the bus's own task.

pub mod bus;
pub mod gather;
pub mod link;
pub mod next_polls;
pub mod planner;
pub mod registers;
pub mod reply;
pub mod scale_from;
pub mod schedule;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, Transport};
use crate::model::SampleBatch;
pub use next_polls::{NextPolls, PollSlot};

/// Capacity of the sample channel, in batches. Sized so that several full cycles of a large
/// site fit while the consumer commits.
pub const CHANNEL_BATCHES: usize = 1024;

/// Handles of the running bus tasks.
pub struct Acquisition {
    pub tasks: Vec<JoinHandle<()>>,
    /// Per bus name: where requests to its bus task go (interlock writes, the commissioning
    /// CLI's raw transactions through the daemon, see `gateway::bus_proxy`), and what the bus
    /// is connected to.
    pub ports: std::collections::HashMap<String, BusPort>,
    pub devices: usize,
    pub reads_per_cycle: usize,
}

/// The request entrance of one running bus task.
#[derive(Debug, Clone)]
pub struct BusPort {
    /// What the bus task's link is connected to (so a client can tell which bus it means).
    pub transport: Transport,
    pub tx: mpsc::Sender<bus::BusRequest>,
}

/// Requests a bus may have waiting; more wait in their senders (bounded by their timeouts).
pub const REQUEST_QUEUE: usize = 32;

/// Start one `BusTask` per bus that has enabled devices. Batches arrive on the returned
/// receiver. With `poll_at_start`, every device is polled once immediately.
pub fn start(
    config: &Config,
    shutdown: &CancellationToken,
    poll_at_start: bool,
) -> (Acquisition, mpsc::Receiver<SampleBatch>) {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let polls = NextPolls::new();
    (start_with(config, shutdown, poll_at_start, &tx, &polls), rx)
}

/// Like `start`, sending into an existing channel (a config reload starts a new generation of
/// bus tasks feeding the same consumer); every bus task says in `polls` when it polls next.
pub fn start_with(
    config: &Config,
    shutdown: &CancellationToken,
    poll_at_start: bool,
    tx: &mpsc::Sender<SampleBatch>,
    polls: &NextPolls,
) -> Acquisition {
    let mut acq = Acquisition {
        tasks: Vec::new(),
        ports: Default::default(),
        devices: 0,
        reads_per_cycle: 0,
    };
    for bus in &config.buses {
        let devices: Vec<_> = config
            .devices
            .iter()
            .filter(|d| d.enabled && d.bus == bus.name)
            .cloned()
            .collect();
        if devices.is_empty() {
            continue;
        }
        let (rtx, rrx) = mpsc::channel(REQUEST_QUEUE);
        acq.ports.insert(
            bus.name.clone(),
            BusPort {
                transport: bus.transport.clone(),
                tx: rtx,
            },
        );
        let task = bus::BusTask::new(bus.clone(), devices, tx.clone())
            .poll_at_start(poll_at_start)
            .with_requests(rrx)
            .with_next_poll(polls.slot());
        acq.devices += task.device_count();
        acq.reads_per_cycle += task.reads_per_cycle();
        acq.tasks.push(tokio::spawn(task.run(shutdown.clone())));
    }
    acq
}
