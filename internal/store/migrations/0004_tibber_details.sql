-- What Tibber sends that earlier versions did not keep in columns, stored
-- exactly as received (issue 15): device attributes, each capability's
-- description and allowed values, and the account's userinfo sub and name.
ALTER TABLE devices ADD COLUMN attributes TEXT NOT NULL DEFAULT '[]';
ALTER TABLE capability_state ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE capability_state ADD COLUMN available_values TEXT;
ALTER TABLE auth_status ADD COLUMN user_sub TEXT NOT NULL DEFAULT '';
ALTER TABLE auth_status ADD COLUMN user_name TEXT NOT NULL DEFAULT '';
