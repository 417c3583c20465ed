//! The private broker: without `--server`, one nats-server on loopback, or a cluster of them
//! when one server's open-file budget cannot hold the fleet (or `--brokers N` asks for one).

use agents::debug_vars::BrokerInfo;
use natsproc::{LocalNatsCluster, LocalNatsOptions, LocalNatsServer, NatsError};

/// Client connections one private nats-server is given: its open-file limit less room for
/// routes, monitoring and its own files.
pub fn per_server_budget(nofile: u64) -> u64 {
    nofile.saturating_sub(256).max(1)
}

/// One private server or a cluster.
#[derive(Debug)]
pub enum PrivateBrokers {
    One(LocalNatsServer),
    Cluster(LocalNatsCluster),
}

impl PrivateBrokers {
    /// Starts `members` servers (a cluster when more than one). Blocking: call it off the
    /// async runtime.
    pub fn start(members: u32) -> Result<PrivateBrokers, NatsError> {
        let options = LocalNatsOptions::default();
        if members <= 1 {
            Ok(PrivateBrokers::One(LocalNatsServer::start(&options)?))
        } else {
            Ok(PrivateBrokers::Cluster(LocalNatsCluster::start(
                "emulator",
                members as usize,
                &options,
            )?))
        }
    }

    /// How many servers a fleet of `instances` needs when each holds `budget` clients.
    pub fn members_for(instances: u64, budget: u64) -> u32 {
        u32::try_from(instances.div_ceil(budget.max(1))).unwrap_or(u32::MAX)
    }

    fn servers(&self) -> Vec<&LocalNatsServer> {
        match self {
            PrivateBrokers::One(s) => vec![s],
            PrivateBrokers::Cluster(c) => c.members().iter().collect(),
        }
    }

    /// Client URLs of every member.
    pub fn client_urls(&self) -> Vec<String> {
        self.servers().iter().map(|s| s.client_url()).collect()
    }

    /// The monitor URL of the first member.
    pub fn monitor_url(&self) -> String {
        self.servers()
            .first()
            .map(|s| s.monitor_url())
            .unwrap_or_default()
    }

    /// URL, monitor URL and pid of every member, for `/debug/vars`.
    pub fn infos(&self) -> Vec<BrokerInfo> {
        self.servers()
            .iter()
            .map(|s| BrokerInfo {
                url: s.client_url(),
                monitor_url: s.monitor_url(),
                pid: s.pid().unwrap_or(0),
            })
            .collect()
    }

    /// Stops every member.
    pub fn stop(&mut self) {
        match self {
            PrivateBrokers::One(s) => s.stop(),
            PrivateBrokers::Cluster(c) => c.stop(),
        }
    }
}
