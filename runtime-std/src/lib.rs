//! # sockeye-std
//!
//! A blocking runtime for `sockeye-core`: a thread per connection drives the core over
//! `std::net::TcpStream`. (Being written.)
