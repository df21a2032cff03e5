//! Integration tests: real gateways on ephemeral loopback ports, driven over real HTTP.

mod helpers;
mod schemas;

mod abuse;
mod authorization;
mod cluster;
mod connections;
mod docs;
mod durability;
mod holes;
mod layers;
mod limits;
mod observability;
mod openapi;
mod parsers;
mod realtime_auth;
mod realtime_state;
mod realtime_subscriptions;
mod realtime_users;
mod realtime_writes;
mod recovery;
mod rest_auth;
mod rest_batch;
mod rest_conversations;
mod rest_files;
mod rest_import;
mod rest_messages;
mod rest_participants;
mod rest_reactions;
mod rest_users;
mod webhooks;
mod window_cache;
