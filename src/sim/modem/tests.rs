//! Table tests of the modem core: command in, reply text out.
