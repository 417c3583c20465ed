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

    /// How many servers a fleet of `instances` needs when each holds `budget` clients: one
    /// when one server holds the fleet, else one more than the fleet fills, so that the
    /// survivors of a member's crash can hold its clients (N + 1).
    pub fn members_for(instances: u64, budget: u64) -> u32 {
        let needed = u32::try_from(instances.div_ceil(budget.max(1))).unwrap_or(u32::MAX);
        if needed <= 1 {
            1
        } else {
            needed.saturating_add(1)
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_has_room_for_a_member_s_clients_after_it_crashes() {
        assert_eq!(PrivateBrokers::members_for(19_000, 19_744), 1);
        assert_eq!(PrivateBrokers::members_for(50_000, 19_744), 4);
        // After one of the four is gone, each survivor holds a third, within its budget.
        assert!(50_000u64.div_ceil(3) <= 19_744);
    }
}
