"""Run the lab image under QEMU: command line, acceleration, QMP, guest agent, lab topology."""
