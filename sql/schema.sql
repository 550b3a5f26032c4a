-- usermgmt schema. Applied by sql/setup.sh to each database it creates
-- (`usermgmt`, and `usermgmt_test` for the tests); every statement is idempotent.
--
-- Two tables, as in the original design: `users` holds the public profile and
-- `credentials` the login data, so that the hot profile path never reads a
-- password hash and the credentials can be guarded separately. A third,
-- `avatars`, counts the accounts that use each picture file.

-- Usernames are 3-32 characters of [a-z0-9_.-] (tcpserver lowercases and checks
-- them), so an ASCII binary column keeps the unique index small and comparisons
-- exact. Nicknames are any Unicode text: utf8mb4 holds emoji (4-byte UTF-8) and
-- the binary collation returns exactly the bytes that were stored.
CREATE TABLE IF NOT EXISTS users (
    id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    username   VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    nickname   VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    -- The picture's name, a key of avatar_bytes: <sha256 hex>.<png|jpg|gif|webp>.
    avatar     VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NULL,
    -- Bumped by every profile change. The Redis profile cache only ever replaces
    -- an entry with one of a higher version, so a slow reader can never put a
    -- stale profile back after a writer has stored a newer one.
    version    BIGINT UNSIGNED NOT NULL DEFAULT 0,
    created_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    -- The idempotency key of the sign-up that created the account (128 random
    -- bits httpserver makes per HTTP request; proto/src/idempotency.rs),
    -- written in the sign-up's transaction. A copy of that sign-up sent again
    -- after a lost connection finds the username taken with its own key and is
    -- answered as the first was, not 409. NULL for seeded accounts and those
    -- made before the column existed. No index: it is only ever compared on
    -- the row the username finds.
    signup_key BINARY(16) NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_users_username (username)
    -- Ids below 100,000,000 are reserved for seeded accounts (sql/README.md), so
    -- real sign-ups never take an id the seeding tool will want.
) ENGINE = InnoDB AUTO_INCREMENT = 100000000 DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The migration for databases made before signup_key: a nullable column at the
-- end of the row is added in place (MariaDB's instant ADD COLUMN), without
-- copying the table, so it is as quick on ten million accounts as on none; on
-- Galera it replicates as one schema change (TOI) to every node.
ALTER TABLE users ADD COLUMN IF NOT EXISTS signup_key BINARY(16) NULL;

-- One row per user, keyed by the user's id. Login looks a user up by name
-- through uk_credentials_username and reads the profile columns in the same
-- query (a join on the primary key of users).
CREATE TABLE IF NOT EXISTS credentials (
    user_id       BIGINT UNSIGNED NOT NULL,
    username      VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- $pbkdf2-sha256$i=<iterations>$<salt hex>$<hash hex>: at most ~130 bytes.
    password_hash VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    updated_at    TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP,
    PRIMARY KEY (user_id),
    UNIQUE KEY uk_credentials_username (username),
    CONSTRAINT fk_credentials_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;

-- How many accounts use each picture (`users.avatar`). Pictures are named by
-- their content, so accounts that upload the same bytes share one. tcpserver
-- changes a count in the same transaction as the `users.avatar` it follows,
-- and deletes the row, and the picture's bytes, in that same transaction when
-- the count reaches zero (the argument is in tcpserver/src/avatar_refs.rs).
-- A row at zero means the same as no row: nobody uses the picture.
--
-- The SELECT is the migration: it fills the counts from the accounts that
-- exist when the table is created, and only then (CREATE TABLE IF NOT EXISTS
-- ... SELECT does nothing when the table exists). It reads every row of
-- `users` once; on ten million accounts, run it before tcpserver is started.
CREATE TABLE IF NOT EXISTS avatars (
    -- Same form as users.avatar: <sha256 hex>.<png|jpg|gif|webp>.
    name VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    refs INT UNSIGNED NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin
SELECT avatar AS name, COUNT(*) AS refs FROM users WHERE avatar IS NOT NULL GROUP BY avatar;

-- The pictures themselves, one row per picture some account uses, so that
-- every tcpserver of a fleet, and every node of a Galera cluster, has them:
-- the store survives the loss of any one machine. Written in the transaction
-- that takes the picture's first reference, deleted in the one that drops
-- its last (tcpserver/src/avatar_refs.rs); served to httpserver through the
-- RPC (`GetAvatar`). The bytes sit apart from the counts so that changing a
-- count never copies a picture into a replication event (a row image holds
-- every column of its row): a write set carries a picture's bytes only when
-- it stores or deletes that picture, at most 2 MiB each (proto's
-- MAX_IMAGE_LEN), so an upload that replaces a picture is one write set of
-- about 4 MiB at most, far below Galera's wsrep_max_ws_size (2 GiB) and the
-- server's max_allowed_packet (16 MiB, MariaDB 10.11's default).
-- MEDIUMBLOB holds up to 16 MiB; InnoDB keeps the bytes off the index
-- page, so the primary key stays small.
--
-- Pictures that earlier versions stored as files under static/avatars/ are
-- copied in once by tcpserver at start (tcpserver/src/avatar_import.rs).
CREATE TABLE IF NOT EXISTS avatar_bytes (
    -- Same form as avatars.name.
    name  VARCHAR(80) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    bytes MEDIUMBLOB NOT NULL,
    PRIMARY KEY (name)
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;

-- The log-in history: one row per attempt on an existing account (successes,
-- wrong passwords, throttled attempts), written by tcpserver's history
-- drainer in multi-row INSERT IGNOREs. attempt_id is the primary key, so a
-- drain repeated after a crash inserts nothing twice; it starts with the
-- attempt's time (12 hex digits of milliseconds, then 80 random bits), so
-- new rows go to the end of the clustered index rather than anywhere in it,
-- and rows older than 90 days are pruned by a range of it, in bounded
-- batches. "This user's latest" reads ix_logins_user_time backwards. One
-- B-tree beside the key, no more: every index is paid for by every log-in
-- (the drainer's inserts were most of what the history cost). Deleting the
-- account deletes its rows.
CREATE TABLE IF NOT EXISTS logins (
    attempt_id  CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    user_id     BIGINT UNSIGNED NOT NULL,
    -- Milliseconds since the Unix epoch: no time zone to get wrong.
    time_ms     BIGINT UNSIGNED NOT NULL,
    ip          VARCHAR(45) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    browser     VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    os          VARCHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- password, qr
    method      VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    -- success, wrong_password, throttled
    outcome     VARCHAR(16) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    new_device  BOOLEAN NOT NULL DEFAULT FALSE,
    suspicious  BOOLEAN NOT NULL DEFAULT FALSE,
    -- The public id of the session a success opened ('' otherwise).
    session_id  CHAR(32) CHARACTER SET ascii COLLATE ascii_bin NOT NULL DEFAULT '',
    PRIMARY KEY (attempt_id),
    KEY ix_logins_user_time (user_id, time_ms),
    CONSTRAINT fk_logins_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;

-- The migration for tables made before attempt_id was the key (an
-- AUTO_INCREMENT id beside it, attempt_id unique and all random, an index on
-- time_ms for pruning). First, only while the id column is there, the old
-- ids get their row's time in front (keeping 80 of their random bits), so
-- that pruning by the key finds them; then dropping the column drops its
-- key, and the next statement makes attempt_id the key in place of the
-- unique index. Each does nothing to a table made as above (ADD PRIMARY KEY
-- IF NOT EXISTS skips while the old key exists, hence separate statements).
SET @usermgmt_migration = IF(
    EXISTS (SELECT 1 FROM information_schema.COLUMNS
            WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'logins' AND COLUMN_NAME = 'id'),
    'UPDATE logins SET attempt_id = CONCAT(LPAD(LOWER(HEX(time_ms)), 12, ''0''), RIGHT(attempt_id, 20))',
    'DO 0');
EXECUTE IMMEDIATE @usermgmt_migration;
ALTER TABLE logins DROP COLUMN IF EXISTS id;
ALTER TABLE logins ADD PRIMARY KEY IF NOT EXISTS (attempt_id), DROP INDEX IF EXISTS uk_logins_attempt,
    DROP INDEX IF EXISTS ix_logins_time;

-- What each account has logged in with in the last 90 days: a 128-bit digest
-- of (browser, OS, network) and one of the network alone (/24 for IPv4, /48
-- for IPv6), with the last time it was seen. A success whose digest is not
-- here is a new device.
CREATE TABLE IF NOT EXISTS known_devices (
    user_id      BIGINT UNSIGNED NOT NULL,
    fingerprint  BINARY(16) NOT NULL,
    last_seen_ms BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (user_id, fingerprint),
    KEY ix_known_devices_seen (last_seen_ms),
    CONSTRAINT fk_known_devices_user FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE CASCADE
) ENGINE = InnoDB DEFAULT CHARSET = ascii COLLATE = ascii_bin;
