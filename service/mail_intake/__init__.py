"""E-mail intake (issue 12): the office mailbox as a ticket channel; docs/mail_intake.md."""
