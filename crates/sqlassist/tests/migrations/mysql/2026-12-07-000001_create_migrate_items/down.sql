DROP TABLE migrate_items_mysql;
