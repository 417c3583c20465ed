//! A private nats-server cluster on loopback: members joined by routes, each a
//! [`LocalNatsServer`], for fleets too big for one server's open-file budget.
//!
//! Start: member 0 listens for routes on a random port; every other member routes to it and
//! the servers' gossip completes the mesh; [`LocalNatsCluster::start`] returns once every member
//! reports `size - 1` routes on `/routez`. A member can be killed (as a crash would) and started
//! again on its old client and route ports, routing to a live member.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::server::{ClusterOptions, LocalNatsOptions, LocalNatsServer, NatsError};

/// A running cluster; every member is stopped on drop.
#[derive(Debug)]
pub struct LocalNatsCluster {
    name: String,
    options: LocalNatsOptions,
    members: Vec<LocalNatsServer>,
    /// Client and route ports of each member, kept for restarts.
    ports: Vec<(u16, u16)>,
}

impl LocalNatsCluster {
    /// Starts `size` members named after `name` and waits until they form a full mesh.
    pub fn start(name: &str, size: usize, options: &LocalNatsOptions) -> Result<Self, NatsError> {
        let size = size.max(1);
        let mut members: Vec<LocalNatsServer> = Vec::with_capacity(size);
        for i in 0..size {
            let routes = members.first().and_then(LocalNatsServer::route_url);
            let member = LocalNatsServer::start(&LocalNatsOptions {
                cluster: Some(ClusterOptions {
                    name: name.to_owned(),
                    route_port: None,
                    routes: routes.into_iter().collect(),
                }),
                ..options.clone()
            })?;
            tracing::debug!(member = i, url = %member.client_url(), "cluster member started");
            members.push(member);
        }
        let ports = members
            .iter()
            .map(|m| (m.client_port(), m.route_port()))
            .collect();
        let cluster = LocalNatsCluster {
            name: name.to_owned(),
            options: options.clone(),
            members,
            ports,
        };
        cluster.wait_meshed(Duration::from_secs(15))?;
        Ok(cluster)
    }

    /// The members, in start order.
    pub fn members(&self) -> &[LocalNatsServer] {
        &self.members
    }

    /// Stops every member.
    pub fn stop(&mut self) {
        for m in &mut self.members {
            m.stop();
        }
    }

    /// `nats://127.0.0.1:<port>` of every member.
    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(LocalNatsServer::client_url)
            .collect()
    }

    /// Kills member `i` at once (SIGKILL).
    pub fn kill(&mut self, i: usize) {
        if let Some(m) = self.members.get_mut(i) {
            m.kill();
        }
    }

    /// Starts member `i` again on its old client and route ports, routing to the other
    /// members, and waits until the mesh is whole again.
    pub fn restart(&mut self, i: usize) -> Result<(), NatsError> {
        let Some(&(client_port, route_port)) = self.ports.get(i) else {
            return Ok(());
        };
        let routes = self
            .members
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .filter_map(|(_, m)| m.route_url())
            .collect();
        let member = LocalNatsServer::start(&LocalNatsOptions {
            port: Some(client_port),
            cluster: Some(ClusterOptions {
                name: self.name.clone(),
                route_port: Some(route_port),
                routes,
            }),
            ..self.options.clone()
        })?;
        self.members[i] = member;
        self.wait_meshed(Duration::from_secs(15))
    }

    /// Waits until every running member has a route to every other running member.
    fn wait_meshed(&self, limit: Duration) -> Result<(), NatsError> {
        let started = Instant::now();
        let expected = self.members.len().saturating_sub(1);
        loop {
            let routes: Vec<Option<usize>> = self
                .members
                .iter()
                .map(|m| num_routes(m.monitor_port()))
                .collect();
            if routes.iter().all(|r| *r == Some(expected)) {
                return Ok(());
            }
            if started.elapsed() > limit {
                return Err(NatsError::NotReady {
                    seconds: limit.as_secs(),
                    log: format!(
                        "cluster {} did not form a full mesh: routes per member {routes:?}, expected {expected}",
                        self.name
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `num_routes` of a member's `/routez`, over a plain HTTP/1.0 GET on loopback.
fn num_routes(monitor_port: u16) -> Option<usize> {
    let mut stream = TcpStream::connect(("127.0.0.1", monitor_port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /routez HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    let rest = &body[body.find("\"num_routes\":")? + "\"num_routes\":".len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_members_mesh_survive_a_kill_and_rejoin() {
        let mut cluster = LocalNatsCluster::start("t", 3, &LocalNatsOptions::default()).unwrap();
        assert_eq!(cluster.client_urls().len(), 3);
        for m in cluster.members() {
            assert_eq!(num_routes(m.monitor_port()), Some(2));
        }
        let old = cluster.members()[0].client_url();
        cluster.kill(0);
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(num_routes(cluster.members()[1].monitor_port()), Some(1));
        cluster.restart(0).unwrap();
        assert_eq!(
            cluster.members()[0].client_url(),
            old,
            "same client port after a restart"
        );
        for m in cluster.members() {
            assert_eq!(num_routes(m.monitor_port()), Some(2));
        }
    }
}
